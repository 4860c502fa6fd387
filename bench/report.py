"""The results of one run, as one table (markdown) and as JSON.

Each row is one measurement; its goal is the target set for it and the result says,
with the measured figures, whether the goal was met. Goals are goals, not a pass/fail test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.cost import MIB, ProcessCost
from bench.load import LoadResult
from bench.phases import WRITE_VARIANTS, Duplicates, Expiry, Idle, Measurement, lag_summary
from bench.population import Population
from harness.machine import Machine
from harness.table import render_table
from session_operator.config import Settings

WRITE_THROUGHPUT_SHARE = 0.8
WRITE_P99_FACTOR = 2.0
NOOP_THROUGHPUT = 3000.0
NOOP_P99_MS = 20.0
EXPIRY_P99_MS = 1000.0
EXPIRY_RATE_SHARE = 0.8
RSS_LIMIT_MIB = 320.0
RSS_SLOPE_LIMIT_KIB = 8.0
IDLE_CPU_LIMIT = 0.05
SLOPE_UPPER_N = 10_000
WRITE_CPU_FACTOR = 1.25
"""A heartbeat's write may cost the apiserver this much more CPU than a raw patch."""
DEFAULT_INTERVAL_SECONDS = 5
HEADERS = ("phase", "measurement", "N", "c", "rate", "p50", "p99", "apiserver", "goal", "result")


@dataclass
class Results:
    """Everything one run measured."""

    machine: Machine
    mode: str
    started: str
    populations: list[Population] = field(default_factory=list)
    idle: list[Idle] = field(default_factory=list)
    raw: list[Measurement] = field(default_factory=list)
    variants: list[Measurement] = field(default_factory=list)
    """The heartbeat's write made by other means (:data:`WRITE_VARIANTS`)."""
    writes: list[Measurement] = field(default_factory=list)
    noops: list[Measurement] = field(default_factory=list)
    duplicates: list[Duplicates] = field(default_factory=list)
    expiries: list[Expiry] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str = ""
    """Why the run stopped early (empty: it ran every phase)."""

    def raw_at(self, live: int, concurrency: int) -> Measurement | None:
        """The raw-ceiling run at the same population and concurrency."""
        for run in self.raw:
            if run.live == live and run.load.concurrency == concurrency:
                return run
        return None

    def ceiling(self, live: int) -> Measurement | None:
        """The fastest raw-ceiling run with the operator holding *live* sessions, or the
        next larger population measured (else the largest)."""
        sizes = sorted({run.live for run in self.raw if run.live > 0})
        if not sizes:
            return None
        size = next((n for n in sizes if n >= live), sizes[-1])
        runs = [run for run in self.raw if run.live == size]
        return max(runs, key=lambda run: run.load.throughput)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _rate(value: float, unit: str = "/s") -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:,.1f}{unit}"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _cost(cost: ProcessCost) -> str:
    return f"RSS {cost.rss_max / MIB:,.0f} MiB, CPU {100 * cost.core_share:.1f} % of a core"


def _verdict(met: bool, detail: str) -> str:
    return f"{'met' if met else 'missed'}: {detail}"


def _failures(run: Measurement) -> str:
    failures = run.load.failures
    if not failures:
        return ""
    listed = ", ".join(f"{count}x {status or 'no answer'}" for status, count in failures.items())
    return f"; errors: {listed}"


def _gated(run: Measurement) -> str:
    share = run.load.gated_seconds / (run.load.seconds * run.load.concurrency or 1)
    return f"; interval-bound {100 * share:.0f} % of worker time" if share > 0.01 else ""


def _run_row(
    phase: str, measurement: str, run: Measurement, apiserver: str, goal: str, result: str
) -> tuple[str, ...]:
    """A row for a closed-loop run: its N, c, rate and latency, then the given columns."""
    load = run.load
    return (
        phase,
        measurement,
        _n(run.live),
        str(load.concurrency),
        _rate(load.throughput),
        _ms(load.latency.p50_ms),
        _ms(load.latency.p99_ms),
        apiserver,
        goal,
        result,
    )


def _setup_row(pop: Population) -> tuple[str, ...]:
    operator = pop.cost.get("operator")
    cpu = f"; operator CPU {100 * operator.core_share:.0f} %" if operator else ""
    timing = f"all {pop.live:,} held ready after {pop.ready_seconds:.1f} s"
    if pop.seeded:
        measurement = f"seed {pop.created:,} initialised sessions (operator running)"
        writes = f"2 seeding + {pop.operator_writes_per_session:.2f} operator writes/session"
        timing += f" (seeded in {pop.create_seconds:.1f} s)"
    else:
        measurement = f"create {pop.created:,} sessions, the operator makes them ready"
        writes = f"{pop.writes_per_session:.1f} writes/session"
        timing += f" (created in {pop.create_seconds:.1f} s)"
    rate = pop.created / pop.ready_seconds if pop.ready_seconds else math.nan
    return ("setup", measurement, _n(pop.live), "32", _rate(rate), "", "", writes, "",
            timing + cpu)  # fmt: skip


def table_rows(results: Results) -> list[tuple[str, ...]]:
    """The table's rows, in phase order."""
    rows = [_setup_row(pop) for pop in results.populations]
    for run in results.raw:
        where = "operator not started" if run.live == 0 else "unwatched namespace"
        rows.append(
            _run_row(
                "1 raw",
                f"status merge-PATCH, {where}",
                run,
                f"{run.writes_per_op:.2f} writes/op; {_cpu_per_op(run)}",
                "the ceiling",
                f"{run.load.ok:,} patches{_failures(run)}",
            )
        )
    rows.extend(_variant_row(results, run) for run in results.variants)
    for run in results.writes:
        raw = results.raw_at(run.live, run.load.concurrency)
        goal, verdict = "", f"{run.load.ok:,} beats"
        if raw is not None and raw.load.throughput > 0:
            share = run.load.throughput / raw.load.throughput
            factor = run.load.latency.p99_ms / raw.load.latency.p99_ms
            cpu = _apiserver_cpu_ratio(run, raw)
            goal = (
                f"≥ {_rate(WRITE_THROUGHPUT_SHARE * raw.load.throughput)} (80 % of raw), "
                f"p99 ≤ {_ms(WRITE_P99_FACTOR * raw.load.latency.p99_ms)} (2x raw), "
                f"apiserver CPU/beat ≤ {WRITE_CPU_FACTOR}x raw"
            )
            verdict = _verdict(
                share >= WRITE_THROUGHPUT_SHARE
                and factor <= WRITE_P99_FACTOR
                and cpu <= WRITE_CPU_FACTOR,
                f"{100 * share:.0f} % of raw, p99 {factor:.1f}x raw, "
                f"apiserver CPU/beat {cpu:.2f}x raw",
            )
        extended = int(run.operator_results.get("extended", 0))
        rows.append(
            _run_row(
                "2a heartbeat",
                "must write (interval 1 s, ≤ 1 beat/session/interval)",
                run,
                f"{run.writes_per_op:.2f} writes/beat, {run.calls_per_op:.2f} calls/beat; "
                + _cpu_per_op(run),
                goal,
                f"{verdict}; {extended:,} extended{_gated(run)}{_failures(run)}",
            )
        )
    auth_ttl = Settings().auth_cache_ttl.total_seconds()
    for run in results.noops:
        calls = run.calls
        # Auth decisions are cached per token and per (caller, session) for authCacheTTL:
        # one review per target (and one for the token) per TTL is the cache working.
        refreshes = (run.targets + 1) * math.ceil(run.load.seconds / auth_ttl)
        misses = []
        if run.load.throughput < NOOP_THROUGHPUT:
            misses.append("rate")
        if run.load.latency.p99_ms > NOOP_P99_MS:
            misses.append("p99")
        if calls.session_calls or calls.reviews > refreshes:
            misses.append("apiserver calls")
        noop = int(run.operator_results.get("noop", 0))
        detail = f"{run.load.ok:,} beats, {noop:,} noop{_failures(run)}"
        rows.append(
            _run_row(
                "2b heartbeat",
                f"inside the interval ({run.targets:,} pre-beaten sessions, interval 3600 s)",
                run,
                f"{calls.session_calls} Session calls, {calls.reviews} auth reviews",
                f"≥ 3,000/s, p99 ≤ 20 ms, no apiserver call (auth: cache refresh only, "
                f"TTL {auth_ttl:.0f} s)",
                _verdict(
                    not misses, detail + (f" (missed: {', '.join(misses)})" if misses else "")
                ),
            )
        )
    for dup in results.duplicates:
        calls = dup.calls
        met = calls.status_writes <= dup.sessions
        rows.append(
            (
                "2c duplicates",
                f"{dup.sessions:,} never-beaten sessions x {dup.copies} concurrent first beats",
                _n(dup.live),
                str(dup.copies),
                "",
                _ms(dup.latency.p50_ms),
                _ms(dup.latency.p99_ms),
                f"{calls.status_writes} writes, {calls.refused_writes} refused (422), "
                f"{calls.reads} re-reads",
                "0 writes for duplicates (≤ 1 per session per interval)",
                _verdict(
                    met,
                    f"{calls.status_writes / dup.sessions:.2f} writes/session, "
                    f"{max(0, dup.extra_writes)} for duplicates; answers {_statuses(dup)}",
                ),
            )
        )
    for exp in results.expiries:
        rows.append(_expiry_row(results, exp))
    rows.extend(_cost_rows(results))
    rows.append(_sustained_row(results))
    return rows


def _cpu_per_op(run: Measurement) -> str:
    """CPU per 2xx answer of the processes that serve a write."""
    parts = [
        f"{name} {run.cpu_ms_per_op(name):.2f}"
        for name in ("kube-apiserver", "etcd", "operator")
        if name in run.cost
    ]
    return "CPU ms/op: " + ", ".join(parts)


def _apiserver_cpu_ratio(run: Measurement, raw: Measurement) -> float:
    return run.cpu_ms_per_op("kube-apiserver") / raw.cpu_ms_per_op("kube-apiserver")


def _variant_row(results: Results, run: Measurement) -> tuple[str, ...]:
    """A write variant beside the raw merge patch of the same N and c."""
    variant = next(v for v in WRITE_VARIANTS if v.label == run.label)
    raw = results.raw_at(run.live, run.load.concurrency)
    versus = ""
    if raw is not None:
        versus = (
            f"; apiserver CPU/op {_apiserver_cpu_ratio(run, raw):.2f}x, "
            f"rate {run.load.throughput / raw.load.throughput:.2f}x the raw merge patch"
        )
    return _run_row(
        "1 write",
        variant.description,
        run,
        f"{run.writes_per_op:.2f} writes/op; {_cpu_per_op(run)}",
        "where a heartbeat's write costs",
        f"{run.load.ok:,} patches{versus}{_failures(run)}",
    )


def _statuses(dup: Duplicates) -> str:
    return ", ".join(f"{count}x {status}" for status, count in sorted(dup.statuses.items()))


def _expiry_row(results: Results, exp: Expiry) -> tuple[str, ...]:
    lag = exp.lag
    writes = exp.writes_per_expiry
    per = max(exp.observed, 1)
    labels = exp.metadata_writes.get("label", 0)
    annotations = exp.metadata_writes.get("annotations", 0)
    other = exp.calls.object_writes - labels - annotations
    beats = exp.background.ok if exp.background else 0
    breakdown = (
        f"{writes:.2f} writes/expiry: status {(exp.calls.status_writes - beats) / per:.2f}, "
        f"label {labels / per:.2f}, annotations {annotations / per:.2f}, "
        f"Event {exp.calls.event_writes / per:.2f}"
        + (f", other metadata {other / per:.2f}" if other else "")
        + (f"; {exp.calls.refused_writes} refused" if exp.calls.refused_writes else "")
    )
    missing = exp.sessions - exp.observed
    seen = f"{exp.observed:,}/{exp.sessions:,} stopped" + (
        f" ({missing:,} not seen)" if missing else ""
    )
    if exp.label == "burst":
        ceiling = results.ceiling(exp.live)
        goal, verdict = "", seen
        if ceiling is not None and writes > 0:
            target = EXPIRY_RATE_SHARE * ceiling.load.throughput / writes
            goal = f"≥ {_rate(target)} (80 % of {_rate(ceiling.load.throughput)} ÷ {writes:.2f})"
            verdict = _verdict(
                exp.rate >= target and not missing,
                f"{seen}, drained in {exp.drain_seconds:.1f} s, max lag {_ms(lag.max_ms)}",
            )
        measurement = f"{exp.sessions:,} leases ending at the same instant"
    else:
        goal = "lag p99 ≤ 1 s"
        verdict = _verdict(
            lag.p99_ms <= EXPIRY_P99_MS and not missing,
            f"{seen}, max lag {_ms(lag.max_ms)}",
        )
        window = exp.last_deadline - exp.first_deadline
        measurement = f"{exp.sessions:,} deadlines spread over {window:.0f} s"
    if exp.background is not None:
        load = exp.background
        measurement += (
            f", under must-write heartbeats (c={load.concurrency}: {_rate(load.throughput)},"
            f" p99 {_ms(load.latency.p99_ms)})"
        )
        breakdown += f" (the heartbeats' {beats:,} status writes not counted)"
    if exp.graced:
        verdict += f"; {exp.graced:,} given an outage grace instead"
    if exp.watch_trouble:
        verdict += f"; watch: {exp.watch_trouble}"
    return (
        "3 expiry",
        measurement,
        _n(exp.live),
        "",
        _rate(exp.rate, " expiries/s"),
        _ms(lag.p50_ms),
        _ms(lag.p99_ms),
        breakdown,
        goal,
        verdict,
    )


def _cost_rows(results: Results) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    largest = max((idle.live for idle in results.idle), default=0)
    slope = _rss_slope_kib(results)
    for idle in results.idle:
        live, costs = idle.live, idle.cost
        operator = costs["operator"]
        goal, verdict = "", _cost(operator)
        if live == largest:
            goal = (
                f"RSS ≤ {RSS_LIMIT_MIB:.0f} MiB and ≤ {RSS_SLOPE_LIMIT_KIB:.0f} KiB per added "
                f"session, idle CPU ≤ {100 * IDLE_CPU_LIMIT:.0f} % of a core"
            )
            met = (
                operator.rss_max / MIB <= RSS_LIMIT_MIB
                and operator.core_share <= IDLE_CPU_LIMIT
                and not slope > RSS_SLOPE_LIMIT_KIB
            )
            verdict = _verdict(met, _cost(operator))
            if not math.isnan(slope):
                verdict += f"; RSS slope {slope:.1f} KiB per added session"
        if "standby" in costs:
            start = idle.standby_start
            verdict += (
                f"; standby replica: {_cost(costs['standby'])}; its start to ready "
                f"{start.wall_seconds:.1f} s, CPU {start.cpu_seconds:.1f} s, "
                f"peak {start.rss_max / MIB:.0f} MiB"
            )
        rows.append(
            (
                "4 cost",
                f"operator idle ({operator.wall_seconds:.0f} s), {idle.lapsing} leases fall due",
                _n(live),
                "",
                "",
                "",
                "",
                f"apiserver CPU {100 * costs['kube-apiserver'].core_share:.1f} %",
                goal,
                verdict,
            )
        )
    loads: list[tuple[str, Measurement]] = []
    for label, runs in (
        ("must-write heartbeats", results.writes),
        ("noop heartbeats", results.noops),
    ):
        for live in sorted({run.live for run in runs}):
            busiest = max((r for r in runs if r.live == live), key=lambda r: r.load.concurrency)
            loads.append((label, busiest))
    for label, run in loads:
        rows.append(
            _load_cost_row(f"operator under {label}", run.live, run.load.concurrency, run.cost)
        )
    for exp in results.expiries:
        rows.append(_load_cost_row(f"operator during {exp.label} expiry", exp.live, 0, exp.cost))
    return rows


def _rss_slope_kib(results: Results) -> float:
    """The leader's idle RSS growth per added session, KiB, from the smallest N measured
    to 10,000 (or the largest below it): the slope between 1k and 10k that the goal names."""
    idle = sorted((run.live, run.cost["operator"].rss_max) for run in results.idle)
    upper = [item for item in idle if item[0] <= SLOPE_UPPER_N] or idle
    if len(idle) < 2 or upper[-1][0] == idle[0][0]:
        return math.nan
    (small, small_rss), (large, large_rss) = idle[0], upper[-1]
    return (large_rss - small_rss) / (large - small) / 1024


def _load_cost_row(
    label: str, live: int, concurrency: int, costs: dict[str, ProcessCost]
) -> tuple[str, ...]:
    operator = costs["operator"]
    others = ", ".join(
        f"{name} {100 * costs[name].core_share:.0f} %"
        for name in ("kube-apiserver", "etcd", "bench")
        if name in costs
    )
    return (
        "4 cost",
        label,
        _n(live),
        str(concurrency) if concurrency else "",
        "",
        "",
        "",
        f"CPU: {others}",
        f"RSS ≤ {RSS_LIMIT_MIB:.0f} MiB",
        _verdict(operator.rss_max / MIB <= RSS_LIMIT_MIB, _cost(operator)),
    )


def _sustained_row(results: Results) -> tuple[str, ...]:
    """How many sessions the default lease (one write per session per 5 s) sustains: at
    each N measured, the best must-write heartbeat rate times 5 s, against N itself."""
    checks: list[str] = []
    held: list[int] = []
    failed: list[tuple[int, float]] = []
    for live in sorted({run.live for run in results.writes}):
        best = max((run for run in results.writes if run.live == live), key=_throughput)
        capacity = best.load.throughput * DEFAULT_INTERVAL_SECONDS
        if capacity >= live:
            held.append(live)
        else:
            failed.append((live, capacity))
        checks.append(
            f"N={live:,}: 5 s x {_rate(best.load.throughput)} = {capacity:,.0f} "
            f"{'≥' if capacity >= live else '<'} N"
        )
    if not checks:
        return ("sizing", "sessions the default 60 s / 5 s lease sustains", "", "", "", "", "",
                "", "", "not measured")  # fmt: skip
    return (
        "sizing",
        "sessions the default 60 s / 5 s lease sustains (1 write per session per 5 s)",
        "",
        "",
        f"{_sustained_headline(held, failed)} sessions",
        "",
        "",
        "",
        "state the bound (issue: ≈ 3,500 at ~700 writes/s)",
        "bound: the must-write heartbeat rate; " + "; ".join(checks),
    )


def _sustained_headline(held: list[int], failed: list[tuple[int, float]]) -> str:
    if held:
        larger = [live for live, _ in failed if live > max(held)]
        return f"≥ {max(held):,}" + (f", < {min(larger):,}" if larger else "")
    return f"≈ {failed[0][1]:,.0f}"


def _throughput(run: Measurement) -> float:
    return run.load.throughput


def render(results: Results) -> str:
    """The header lines, the table, and the notes: what ``make bench`` prints."""
    header = [
        f"session-lease-operator benchmark, {results.started} ({results.mode} run, "
        f"{results.seconds / 60:.1f} min)",
        f"machine: {results.machine.describe()}",
        "",
    ]
    notes = ["", *(f"- {note}" for note in results.notes)] if results.notes else []
    if results.error:
        notes = ["", f"ABORTED, later phases not measured: {results.error}", *notes]
    return "\n".join([*header, render_table(table_rows(results), HEADERS), *notes])


def _load(load: LoadResult) -> dict[str, Any]:
    return {
        "concurrency": load.concurrency,
        "seconds": round(load.seconds, 3),
        "ok": load.ok,
        "throughput_per_s": round(load.throughput, 1),
        "p50_ms": round(load.latency.p50_ms, 2),
        "p99_ms": round(load.latency.p99_ms, 2),
        "max_ms": round(load.latency.max_ms, 2),
        "statuses": {str(status): count for status, count in load.statuses.items()},
        "interval_bound_seconds": round(load.gated_seconds, 3),
    }


def _measurement(run: Measurement) -> dict[str, Any]:
    return {
        "live_sessions": run.live,
        "targets": run.targets,
        **_load(run.load),
        "apiserver": run.calls.as_dict(),
        "writes_per_op": round(run.writes_per_op, 4),
        "calls_per_op": round(run.calls_per_op, 4),
        "operator_heartbeat_results": run.operator_results,
        "cost": {name: cost.as_dict() for name, cost in run.cost.items()},
    }


class RunSummary(Protocol):
    """What every tier's results say of their run."""

    started: str
    mode: str
    seconds: float
    machine: Machine
    notes: list[str]
    error: str


def run_head(results: RunSummary, table: str) -> dict[str, Any]:
    """The first keys of a run's JSON: when, how long, where, the table, the notes."""
    return {
        "started": results.started,
        "mode": results.mode,
        "seconds": round(results.seconds, 1),
        "machine": results.machine.as_dict(),
        "table": table,
        "notes": results.notes,
        "error": results.error or None,
    }


def as_json(results: Results, table: str) -> dict[str, Any]:
    """The whole run as a JSON-ready dict (the table included, verbatim)."""
    return {
        **run_head(results, table),
        "setup": [
            {
                "live_sessions": pop.live,
                "created": pop.created,
                "create_seconds": round(pop.create_seconds, 2),
                "ready_seconds": round(pop.ready_seconds, 2),
                "writes_per_session": round(pop.writes_per_session, 3),
                "seeded": pop.seeded,
                "operator_writes_per_session": round(pop.operator_writes_per_session, 3),
                "apiserver": pop.calls.as_dict(),
                "cost": {name: cost.as_dict() for name, cost in pop.cost.items()},
            }
            for pop in results.populations
        ],
        "raw_ceiling": [_measurement(run) for run in results.raw],
        "write_variants": [{"variant": run.label} | _measurement(run) for run in results.variants],
        "heartbeats_must_write": [_measurement(run) for run in results.writes],
        "heartbeats_inside_interval": [_measurement(run) for run in results.noops],
        "duplicate_heartbeats": [
            {
                "live_sessions": dup.live,
                "sessions": dup.sessions,
                "copies": dup.copies,
                "statuses": {str(status): count for status, count in dup.statuses.items()},
                "p50_ms": round(dup.latency.p50_ms, 2),
                "p99_ms": round(dup.latency.p99_ms, 2),
                "apiserver": dup.calls.as_dict(),
                "writes_for_duplicates": max(0, dup.extra_writes),
                "operator_heartbeat_results": dup.operator_results,
            }
            for dup in results.duplicates
        ],
        "expiry": [
            {
                "kind": exp.label,
                "live_sessions": exp.live,
                "sessions": exp.sessions,
                "observed": exp.observed,
                "window_seconds": round(exp.last_deadline - exp.first_deadline, 3),
                "drain_seconds": round(exp.drain_seconds, 3),
                "expiries_per_s": round(exp.rate, 1),
                "lag_watch": lag_summary(exp.lag_seconds),
                "lag_stopped_at": lag_summary(exp.operator_lag_seconds),
                "stop_reasons": exp.reasons,
                "metadata_writes_seen": exp.metadata_writes,
                "late_patches": exp.late_patches,
                "watch_trouble": exp.watch_trouble or None,
                "watch_events": exp.watch_events,
                "outage_grace_given": exp.graced,
                "apiserver": exp.calls.as_dict(),
                "writes_per_expiry": round(exp.writes_per_expiry, 3),
                "cost": {name: cost.as_dict() for name, cost in exp.cost.items()},
                "background_heartbeats": _load(exp.background) if exp.background else None,
            }
            for exp in results.expiries
        ],
        "idle": [
            {
                "live_sessions": idle.live,
                "leases_falling_due": idle.lapsing,
                "cost": {name: cost.as_dict() for name, cost in idle.cost.items()},
                "standby_start": idle.standby_start.as_dict(),
            }
            for idle in results.idle
        ],
    }
