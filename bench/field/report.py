"""The field tier's results: one table with a computed verdict per goal, and JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.cost import MIB, ProcessCost
from bench.field.measure import OpenLoop, Window
from bench.field.phases import Failover, PodEventCost, Restart, SustainStep
from bench.field.plan import INTERVAL_SECONDS
from bench.load import Latency, LoadResult
from bench.phases import Expiry, lag_summary
from bench.report import run_head
from harness.machine import Machine
from harness.table import render_table

SUSTAIN_SHARE = 0.8
"""Sessions sustained at the defaults, at least this share of raw ceiling x 5 s."""
WRITE_SHARE = 0.8
"""Must-write beats per second, at least this share of the raw ceiling."""
CALLS_PER_WRITE_BEAT = 1.1
CALLS_PER_NOOP_BEAT = 0.05
WRITES_PER_EXPIRY_WITH_POD = 5.0
TAKEOVER_SECONDS = 15.0
LAG_AFTER_TAKEOVER_MS = 2000.0
READY_SECONDS = 30.0
READY_GOAL_SESSIONS = 50_000
POD_EVENT_CORE_PERCENT = 1.0
"""The replicas' CPU on unrelated Pod events, % of a core per 100 events per second."""
HEADERS = ("phase", "measurement", "N", "rate", "p50", "p99", "apiserver", "goal", "result")


@dataclass
class FieldResults:
    """Everything one field run measured."""

    machine: Machine
    mode: str
    started: str
    accounts: int = 0
    namespaces: int = 0
    churn_pods: int = 0
    ceiling: LoadResult | None = None
    raw_at_rate: dict[int, OpenLoop] = field(default_factory=dict)
    pod_events: PodEventCost | None = None
    noop: Window | None = None
    noop_sessions: int = 0
    expiry: Expiry | None = None
    steps: list[SustainStep] = field(default_factory=list)
    failover: Failover | None = None
    restart: Restart | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str = ""
    cpus: str | None = None
    """Where the processes ran (:mod:`bench.field.cpus`); ``None``: all on every CPU."""

    @property
    def ceiling_rate(self) -> float:
        """Raw status patches per second, closed loop (the ceiling)."""
        return self.ceiling.throughput if self.ceiling else math.nan

    @property
    def goal_sessions(self) -> int:
        """Sessions to sustain: the share of raw ceiling x the default interval."""
        if self.ceiling is None:
            return 0
        return round(SUSTAIN_SHARE * self.ceiling_rate * INTERVAL_SECONDS)

    @property
    def sustained(self) -> SustainStep | None:
        """The largest step sustained."""
        passed = [step for step in self.steps if step.sustained]
        return max(passed, key=lambda step: step.sessions) if passed else None


def _ms(value: float) -> str:
    if math.isnan(value):
        return ""
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _verdict(met: bool, detail: str) -> str:
    return f"{'met' if met else 'missed'}: {detail}"


def _cpu(cost: dict[str, ProcessCost], name: str) -> str:
    found = cost.get(name)
    if found is None:
        return f"{name} -"
    return f"{name} {100 * found.core_share:.1f} %, peak {found.rss_max / MIB:.0f} MiB"


def _raw_rows(results: FieldResults) -> list[list[str]]:
    rows = []
    if results.ceiling is not None:
        load = results.ceiling
        rows.append([
            "raw", "status merge-PATCH of Sessions with a template, c=32, Pods churning", "0",
            f"{load.throughput:,.0f}/s", _ms(load.latency.p50_ms), _ms(load.latency.p99_ms),
            "1.00 writes/op", "the ceiling",
            f"sessions goal: {results.goal_sessions:,} (80 % of ceiling x 5 s)",
        ])  # fmt: skip
    for sessions, run in sorted(results.raw_at_rate.items()):
        rows.append([
            "raw", "the same, open loop at a step's beat rate, Pods churning",
            f"{sessions:,}",
            f"{run.rate:,.0f}/s", _ms(run.latency.p50_ms), _ms(run.latency.p99_ms),
            "1.00 writes/op", "the step's p99 bound (2x)",
            f"{sum(run.statuses.values()):,} patches, {run.statuses.get(200, 0):,} ok; "
            f"p99 as the apiserver timed them {_ms(run.apiserver_p99_ms)}",
        ])  # fmt: skip
    return rows


def _step_row(results: FieldResults, step: SustainStep) -> list[str]:
    beats, window = step.beats, step.window
    calls = window.calls
    cpu = ", ".join(
        f"{name} {window.cpu_ms_per_beat(name):.2f} ms/beat" for name in sorted(window.served)
    )
    write_rate = _write_rate(step)
    goal_rate = WRITE_SHARE * results.ceiling_rate
    raw = results.raw_at_rate.get(step.sessions)
    raw_served_p99 = raw.apiserver_p99_ms if raw is not None else math.nan
    return [
        "sustain",
        f"{step.sessions:,} clients, own tokens, TLS, 2 replicas, Pods; "
        f"{step.churn_events_per_second:.0f} unrelated Pod events/s",
        f"{step.sessions:,}",
        f"{window.per_second(beats.beats):,.0f} beats/s",
        _ms(beats.latency.p50_ms),
        _ms(beats.latency.p99_ms),
        f"{step.calls_per_beat:.3f} calls/beat (writes {calls.writes}, reads {calls.reads}, "
        f"TokenReviews {window.per_second(calls.token_reviews):.1f}/s, "
        f"SARs {window.per_second(calls.access_reviews):.2f}/s); {cpu}; status-PATCH p99 "
        f"as the apiserver timed it {_ms(window.apiserver_patch_p99_ms)} "
        f"(raw at this rate: {_ms(raw_served_p99)})",
        f"0 wrongful, p99 ≤ {2 * step.raw_p99_ms:.0f} ms (2x raw); "
        f"≤ {CALLS_PER_WRITE_BEAT} calls/write beat; writes ≥ {goal_rate:,.0f}/s",
        f"{'sustained' if step.sustained else 'not sustained'}: {step.wrongful} wrongful, "
        + (f"{step.unheld:,} not held live at the window's start, " if step.unheld else "")
        + f"p99 {beats.latency.p99_ms / step.raw_p99_ms:.1f}x raw; "
        + _verdict(step.calls_per_beat <= CALLS_PER_WRITE_BEAT, f"{step.calls_per_beat:.3f} calls")
        + f"; writes {write_rate / results.ceiling_rate:.0%} of raw; failures {beats.failures}",
    ]


def _write_rate(step: SustainStep) -> float:
    """Beats that extended a lease (wrote), per second of the step's window."""
    served = step.window.served.values()
    return step.window.per_second(sum(by_outcome.get("extended", 0.0) for by_outcome in served))


def table_rows(results: FieldResults) -> list[list[str]]:
    """One row per measurement, with its goal and its computed verdict."""
    rows = _raw_rows(results)
    if results.pod_events is not None:
        cost = results.pod_events
        shares = {name: cost.core_percent_per_100(name) for name in sorted(cost.churning.cost)
                  if name.startswith("replica")}  # fmt: skip
        worst = max(shares.values(), default=math.nan)
        rows.append([
            "pod events", f"{results.churn_pods:,} unrelated Pods churning, no heartbeats", "",
            f"{cost.events_per_second:,.0f} events/s", "", "",
            "; ".join(_cpu(cost.churning.cost, name) for name in shares),
            f"≤ {POD_EVENT_CORE_PERCENT:.0f} % of a core per 100 events/s",
            _verdict(worst <= POD_EVENT_CORE_PERCENT,
                     ", ".join(f"{n} {v:+.2f} %" for n, v in shares.items())),
        ])  # fmt: skip
    if results.noop is not None:
        window = results.noop
        beats = window.beats
        per_beat = window.calls.calls / beats.beats if beats.beats else math.nan
        rows.append([
            "noop", "beats inside the interval, own tokens, every 5 s",
            f"{results.noop_sessions:,}",
            f"{window.per_second(beats.beats):,.0f} beats/s", _ms(beats.latency.p50_ms),
            _ms(beats.latency.p99_ms),
            f"{per_beat:.3f} calls/beat (TokenReviews {window.calls.token_reviews}, "
            f"SARs {window.calls.access_reviews}, Session calls {window.calls.session_calls})",
            f"≤ {CALLS_PER_NOOP_BEAT} calls/beat",
            _verdict(per_beat <= CALLS_PER_NOOP_BEAT, f"{per_beat:.3f}; failures {beats.failures}"),
        ])  # fmt: skip
    if results.expiry is not None:
        expired = results.expiry
        writes = expired.calls.writes + expired.calls.pod_writes
        per = writes / expired.observed if expired.observed else math.nan
        rows.append([
            "expiry", "leases of Sessions with a Pod end, staggered", f"{expired.sessions:,}",
            f"{expired.rate:,.0f}/s", _ms(expired.lag.p50_ms), _ms(expired.lag.p99_ms),
            f"{per:.2f} writes/expiry (Pod deletes {expired.calls.pod_writes})",
            f"≤ {WRITES_PER_EXPIRY_WITH_POD:.0f} writes per expiry with a Pod",
            _verdict(per <= WRITES_PER_EXPIRY_WITH_POD,
                     f"{expired.observed}/{expired.sessions} stopped, {per:.2f} writes each"),
        ])  # fmt: skip
    rows.extend(_step_row(results, step) for step in results.steps)
    if results.steps:
        best = results.sustained
        sessions = best.sessions if best else 0
        goal = results.goal_sessions
        # None sustained: fewer than the smallest step tried, which is all that is measured.
        smallest = min(step.sessions for step in results.steps)
        shown = f"{sessions:,}" if best else f"< {smallest:,}"
        detail = f"{sessions / goal:.0%} of the goal" if goal else "-"
        if best is None and goal:
            detail = f"no step sustained; the smallest was {smallest / goal:.0%} of the goal"
        rows.append([
            "sustain", "largest number of sessions sustained at 60 s / 5 s", shown,
            "", "", "", "", f"≥ {goal:,} (80 % of raw ceiling x 5 s)",
            _verdict(sessions >= goal, detail),
        ])  # fmt: skip
        share = _write_rate(best) / results.ceiling_rate if best else 0.0
        rows.append([
            "sustain", "must-write beats at the largest step sustained", shown,
            f"{_write_rate(best):,.0f}/s" if best else "", "", "", "",
            f"≥ {WRITE_SHARE:.0%} of the raw ceiling ({WRITE_SHARE * results.ceiling_rate:,.0f}/s)",
            _verdict(share >= WRITE_SHARE, f"{share:.0%} of raw"),
        ])  # fmt: skip
    if results.failover is not None:
        moved = results.failover
        met = moved.met(TAKEOVER_SECONDS, LAG_AFTER_TAKEOVER_MS)
        rows.append([
            "failover", f"leader ({moved.killed}) SIGKILLed; {moved.due} leases fall due around it",
            f"{moved.sessions:,}", f"takeover {moved.takeover_seconds:.1f} s",
            _ms(Latency.of(moved.lag_after).p50_ms), _ms(moved.after_p99_ms),
            f"lag p99 due during takeover {_ms(moved.during_p99_ms)} ({len(moved.lag_during)}), "
            f"after {_ms(moved.after_p99_ms)} ({len(moved.lag_after)}{_by_stopped_at(moved)}); "
            f"graced {moved.graced}; "
            f"beats {moved.beats.failures}; outage recorded {moved.outage_seconds:.0f} s",
            f"new leader ≤ {TAKEOVER_SECONDS:.0f} s, lag p99 after ≤ 2 s, 0 wrongful",
            _verdict(met, f"{moved.observed}/{moved.due} stopped, {moved.wrongful} wrongful"),
        ])  # fmt: skip
    if results.restart is not None:
        restarted = results.restart
        slowest = max(restarted.ready_seconds.values())
        cold = restarted.cold
        bound = READY_SECONDS if restarted.sessions >= READY_GOAL_SESSIONS else None
        rows.append([
            "restart", "both replicas restarted under the clients", f"{restarted.sessions:,}",
            f"ready {slowest:.1f} s", _ms(cold.beats.latency.p50_ms),
            _ms(cold.beats.latency.p99_ms),
            f"first beat answered {restarted.first_beat_seconds:.1f} s after the restart; cold "
            f"caches: TokenReviews {cold.per_second(cold.calls.token_reviews):.1f}/s, "
            f"SARs {cold.per_second(cold.calls.access_reviews):.1f}/s over the {cold.seconds:.0f} s"
            f" from the start; {_cpu(cold.cost, 'replica-a')}; {_cpu(cold.cost, 'replica-b')}; "
            f"outage recorded {restarted.outage_seconds:.0f} s",
            f"ready ≤ {READY_SECONDS:.0f} s at {READY_GOAL_SESSIONS:,}"
            + ("" if bound else " (not this N)"),
            _verdict(slowest <= READY_SECONDS and restarted.wrongful == 0, ", ".join(
                f"{name} {seconds:.1f} s" for name, seconds in restarted.ready_seconds.items())
                + f"; {restarted.wrongful} wrongful; beats {restarted.cold.beats.failures}"),
        ])  # fmt: skip
    return rows


def _by_stopped_at(moved: Failover) -> str:
    """The lag p99 after the takeover as the Sessions' ``stoppedAt`` tells it, where they
    have one (a Session with a Pod is ``stopping`` when first seen stopped: none yet)."""
    if not moved.operator_lag_after:
        return ""
    return f"; by their stoppedAt {_ms(Latency.of(moved.operator_lag_after).p99_ms)}"


def render(results: FieldResults) -> str:
    """The header lines, the table, and the notes."""
    header = [
        f"session-lease-operator benchmark, {results.started} ({results.mode} run, "
        f"{results.seconds / 60:.1f} min)",
        f"machine: {results.machine.describe()}",
        f"clients: {results.accounts} ServiceAccounts in {results.namespaces} namespaces, "
        "one token and one source address per client",
        f"CPUs: {results.cpus or 'shared by the control plane, the replicas and the clients'}",
        "",
    ]
    notes = ["", *(f"- {note}" for note in results.notes)] if results.notes else []
    if results.error:
        notes = ["", f"ABORTED, later phases not measured: {results.error}", *notes]
    profiles = [
        f"\napiserver CPU profile, {step.sessions:,} clients (a quarter of the window, a "
        f"third in), by cumulative share:\n"
        f"{step.apiserver_profile}"
        for step in results.steps
        if step.apiserver_profile
    ]
    profiles += [
        f"\n{replica}, {step.sessions:,} clients (the same span; py-spy, by inclusive "
        f"share):\n{top}"
        for step in results.steps
        for replica, top in step.replica_profiles.items()
    ]
    if results.failover is not None:
        profiles += [
            f"\n{replica} (the standby) from before the kill until every due lease was seen "
            f"stopped (py-spy, by inclusive share):\n{top}"
            for replica, top in results.failover.replica_profiles.items()
        ]
    if results.restart is not None:
        profiles += [
            f"\n{replica} from its restart to ready (py-spy, by inclusive share):\n{top}"
            for replica, top in results.restart.replica_profiles.items()
        ]
    return "\n".join([*header, render_table(table_rows(results), HEADERS), *notes, *profiles])


def _window(window: Window) -> dict[str, Any]:
    beats = window.beats
    return {
        "seconds": round(window.seconds, 2),
        "beats_ok": beats.beats,
        "latency_ms": {"p50": round(beats.latency.p50_ms, 2), "p99": round(beats.latency.p99_ms, 2),
                       "max": round(beats.latency.max_ms, 2)},
        "statuses": {str(status): count for status, count in beats.statuses.items()},
        "by_replica": dict(beats.by_replica),
        "ended": sorted(beats.ended),
        "apiserver": window.calls.as_dict(),
        "apiserver_patch_p99_ms": round(window.apiserver_patch_p99_ms, 2),
        "served": window.served,
        "cost": {name: cost.as_dict() for name, cost in window.cost.items()},
    }  # fmt: skip


def as_json(results: FieldResults, table: str) -> dict[str, Any]:
    """The whole run as a JSON-ready dict (the table included, verbatim)."""
    document: dict[str, Any] = {
        **run_head(results, table),
        "ceiling_per_s": round(results.ceiling_rate, 1) if results.ceiling else None,
        "goal_sessions": results.goal_sessions,
        "cpus": results.cpus or "shared",
        "raw_at_rate": {
            str(n): {"rate": run.rate, "p50_ms": round(run.latency.p50_ms, 2),
                     "p99_ms": round(run.latency.p99_ms, 2),
                     "apiserver_p99_ms": round(run.apiserver_p99_ms, 2),
                     "statuses": {str(s): c for s, c in run.statuses.items()}}
            for n, run in results.raw_at_rate.items()
        },
        "steps": [
            {"sessions": step.sessions, "sustained": step.sustained, "wrongful": step.wrongful,
             "unheld": step.unheld,
             "raw_p99_ms": round(step.raw_p99_ms, 2),
             "calls_per_beat": round(step.calls_per_beat, 4),
             "churn_events_per_s": round(step.churn_events_per_second, 1),
             "apiserver_profile_top": step.apiserver_profile or None,
             "replica_profiles_top": step.replica_profiles or None,
             "evidence": step.evidence.as_dict(),
             **_window(step.window)}
            for step in results.steps
        ],
        "sustained_sessions": results.sustained.sessions if results.sustained else 0,
    }  # fmt: skip
    if results.pod_events is not None:
        document["pod_events"] = {
            "events": results.pod_events.events,
            "quiet": _window(results.pod_events.quiet),
            "churning": _window(results.pod_events.churning),
        }
    if results.noop is not None:
        document["noop"] = {"sessions": results.noop_sessions, **_window(results.noop)}
    if results.expiry is not None:
        expired = results.expiry
        document["expiry_with_pods"] = {
            "sessions": expired.sessions, "observed": expired.observed,
            "lag": lag_summary(expired.lag_seconds),
            "apiserver": expired.calls.as_dict(),
            "cost": {name: cost.as_dict() for name, cost in expired.cost.items()},
        }  # fmt: skip
    if results.failover is not None:
        moved = results.failover
        document["failover"] = {
            "sessions": moved.sessions, "killed": moved.killed,
            "takeover_seconds": round(moved.takeover_seconds, 2),
            "lag_due_during_takeover": lag_summary(moved.lag_during),
            "lag_due_after_takeover": lag_summary(moved.lag_after),
            "operator_lag_due_after_takeover": lag_summary(moved.operator_lag_after),
            "graced": moved.graced,
            "due": moved.due, "observed": moved.observed, "wrongful": moved.wrongful,
            "beat_statuses": {str(s): c for s, c in moved.beats.statuses.items()},
            "apiserver": moved.calls.as_dict(),
            "outage_seconds": round(moved.outage_seconds, 1),
            "evidence": moved.evidence.as_dict(),
            "lag_by_due_after_takeover": [
                [round(due, 2), round(lag, 3)] for due, lag in moved.lag_by_due
            ],
            "replica_profiles_top": moved.replica_profiles or None,
        }  # fmt: skip
    if results.restart is not None:
        restarted = results.restart
        document["restart"] = {
            "sessions": restarted.sessions,
            "ready_seconds": {name: round(s, 2) for name, s in restarted.ready_seconds.items()},
            "first_beat_seconds": round(restarted.first_beat_seconds, 2),
            "wrongful": restarted.wrongful,
            "cold": _window(restarted.cold),
            "replica_profiles_top": restarted.replica_profiles or None,
            "outage_seconds": round(restarted.outage_seconds, 1),
            "evidence": restarted.evidence.as_dict(),
        }
    return document
