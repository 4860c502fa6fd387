"""``make bench``: start a local control plane and the operator, measure, print one table.

The run is bounded (under 10 minutes on a 2-core machine; ``--quick`` in well under one)
and quiet: the operator's and the control plane's logs go to files in a temporary
directory, progress goes to stderr, the table to stdout, and the same figures as JSON to
``bench/results/<timestamp>.json``.

The raw ceiling is measured first, before the operator starts. Then two populations in
turn: N = 1,000 live Sessions, created as users do; then 9,000 more, seeded, for
N = 10,000 (see :class:`Stage` for the kinds of Session each holds). The expiry phases
run last, at N = 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.access import create_heartbeat_role, create_namespaces, grant_account, mint_token
from bench.context import IDLER_LEASE, WRITER_LEASE, Bench, SessionName
from bench.cost import CostMeter
from bench.field.apiserver_alone import AlonePlan, measure_alone, render_alone
from bench.field.apiserver_alone import as_json as alone_json
from bench.field.plan import FIELD_SESSIONS, FieldPlan
from bench.field.report import as_json as field_json
from bench.field.report import render as render_field
from bench.field.run import field_notes, measure_field
from bench.load import Rotation
from bench.phases import (
    RAW,
    WRITE_VARIANTS,
    WRITER_GAP,
    Idle,
    StatusWriter,
    duplicate_heartbeats,
    expiry,
    heartbeat_load,
    heartbeats,
    idle_cost,
    patch_lead,
    same_instant,
    set_deadlines,
    staggered,
    warm_up,
    write_variant,
)
from bench.population import populate, populate_seeded, seed_unwatched
from bench.report import Results, as_json, render
from harness import LocalControlPlane, ensure_built, toolchain
from harness.kube import ApiServer
from harness.machine import describe_machine
from harness.operator_process import OperatorProcess
from harness.progress import Progress
from session_operator.config import FILE_KEYS, env_name

R = TypeVar("R")
REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
WATCHED = "bench"
"""The namespace of the Sessions under test, the only one the operator watches."""
UNWATCHED = "bench-raw"
"""Sessions for the raw ceiling, outside the operator's namespace: nothing reacts to them."""
OPERATOR_ENV = {"XG2G_SESSION_NAMESPACE": WATCHED}
"""The settings of every operator replica the benchmark starts."""
STANDBY_SETTLE_SECONDS = 2.0
IDLE_DUE_LEAD_SECONDS = 1.0
"""Seconds from the idle window's start to the first lease that falls due in it (and from
the last one to its end)."""
"""Time a standby replica is given after its first LIST before its idle cost is metered."""
CLIENT = "bench-client"
CLIENT_TOKEN_SECONDS = 7200
HEARTBEAT_ROLE = "bench-session-heartbeat"
FULL_SESSIONS = 10_000
"""N of the default run's largest tier."""
EXPIRY_LOAD_LIMIT = 120.0
"""Seconds at most that heartbeats run beside an expiry (they stop when it is seen)."""


@dataclass(frozen=True)
class Stage:
    """Sessions added for one population, named ``<prefix>-<kind>-NNNNN``: *writers* (w,
    interval 1 s), *idlers* (i, 3600 s, beaten again inside it), *duplicates* (d, 3600 s,
    never beaten before the duplicate burst), *expirers* (e, interval 1 s, never beaten,
    for the expiry phases: with a short interval an outage the operator records forgives
    a lapse for 2 s at most, lease rule 8) and *lapsing* (u, like expirers: their leases
    fall due during the idle window, as some always do in a real cluster). *seeded*:
    created as the operator leaves a ready session, not made ready by it. *full*: every
    phase runs at this N; otherwise only the idle cost and a staggered expiry (the optional
    large tier)."""

    prefix: str
    writers: int
    idlers: int
    duplicates: int
    expirers: int = 0
    lapsing: int = 0
    seeded: bool = False
    full: bool = True

    @property
    def size(self) -> int:
        """Sessions this stage adds."""
        return self.writers + self.idlers + self.duplicates + self.expirers + self.lapsing

    def names(self, kind: str) -> list[SessionName]:
        """The Sessions of one kind: ``w``, ``i``, ``d``, ``e`` or ``u``."""
        count = {"w": self.writers, "i": self.idlers, "d": self.duplicates, "e": self.expirers,
                 "u": self.lapsing}  # fmt: skip
        return [SessionName(WATCHED, f"{self.prefix}-{kind}-{i:05d}") for i in range(count[kind])]


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does."""

    mode: str
    stages: tuple[Stage, ...]
    concurrencies: tuple[int, ...]
    variant_concurrency: int
    """The concurrency of the write variants (measured at the largest full N only)."""
    load_concurrency: int
    """The concurrency of the heartbeats that run while leases end."""
    raw_sessions: int
    raw_seconds: float
    write_seconds: float
    noop_seconds: float
    idle_seconds: float
    noop_pool: int
    duplicate_copies: int
    staggered_sessions: int
    staggered_window: float
    burst_sessions: int
    expiry_grace: float
    setup_timeout: float
    cleanup_wait: float
    settings: tuple[tuple[str, str], ...] = ()
    """Operator settings given with ``--setting`` (YAML key, value), beside the defaults."""

    def operator_env(self) -> dict[str, str]:
        """The operator's environment: the watched namespace and the settings given."""
        return OPERATOR_ENV | {env_name(_field_of(key)): value for key, value in self.settings}

    @classmethod
    def full(cls, sessions: int = FULL_SESSIONS) -> Plan:
        """N = 1,000 then 10,000 live sessions; with *sessions* above 10,000, a last tier
        of that many measures the idle cost and a staggered expiry."""
        stages = [
            Stage("a", writers=700, idlers=180, duplicates=100, lapsing=20),
            Stage(
                "b", writers=0, idlers=4800, duplicates=100, expirers=4000, lapsing=100, seeded=True
            ),
        ]
        if sessions > FULL_SESSIONS:
            expirers = 1000  # the staggered batch of the large tier
            left = FULL_SESSIONS - stages[-1].expirers  # the expiry phases end those
            lapsing = 100
            idlers = sessions - left - expirers - lapsing
            stages.append(
                Stage("c", writers=0, idlers=idlers, duplicates=0, expirers=expirers,
                      lapsing=lapsing, seeded=True, full=False)
            )  # fmt: skip
        return cls(
            mode="full" if sessions == FULL_SESSIONS else f"full + {sessions:,}",
            stages=tuple(stages),
            concurrencies=(8, 32, 64),
            variant_concurrency=32,
            load_concurrency=8,
            raw_sessions=500,
            raw_seconds=5.0,
            write_seconds=6.0,
            noop_seconds=5.0,
            idle_seconds=15.0,
            noop_pool=1000,
            duplicate_copies=4,
            staggered_sessions=1000,
            staggered_window=20.0,
            burst_sessions=1000,
            expiry_grace=30.0,
            setup_timeout=300.0 + sessions / 100,
            cleanup_wait=1.0,
        )

    @classmethod
    def quick(cls) -> Plan:
        """A smoke run with tiny numbers: every phase once, in about a minute."""
        return cls(
            mode="quick",
            stages=(
                Stage("a", writers=40, idlers=12, duplicates=5, lapsing=3),
                Stage(
                    "b", writers=0, idlers=32, duplicates=5, expirers=200, lapsing=3, seeded=True
                ),
                Stage(
                    "c",
                    writers=0,
                    idlers=37,
                    duplicates=0,
                    expirers=40,
                    lapsing=3,
                    seeded=True,
                    full=False,
                ),
            ),
            concurrencies=(8,),
            variant_concurrency=8,
            load_concurrency=4,
            raw_sessions=40,
            raw_seconds=1.0,
            write_seconds=1.5,
            noop_seconds=1.0,
            idle_seconds=1.0,
            noop_pool=50,
            duplicate_copies=4,
            staggered_sessions=40,
            staggered_window=2.0,
            burst_sessions=60,
            expiry_grace=15.0,
            setup_timeout=60.0,
            cleanup_wait=0.3,
        )

    @property
    def last_full(self) -> int:
        """The index of the largest stage that runs every phase."""
        return max(index for index, stage in enumerate(self.stages) if stage.full)

    def expiry_batches(self, index: int) -> list[tuple[str, int, bool]]:
        """The expiry runs after stage *index*: (``staggered`` or ``burst``, sessions,
        under heartbeats)."""
        staggered = ("staggered", self.staggered_sessions, False)
        if not self.stages[index].full:
            return [staggered]
        if index != self.last_full:
            return []
        burst = ("burst", self.burst_sessions, False)
        return [staggered, burst, (*staggered[:2], True), (*burst[:2], True)]

    def steps(self) -> dict[str, float]:
        """The run's steps with their expected seconds (the progress bar's weights)."""
        steps = {"control plane": 8.0, "raw sessions": 2.0 + self.raw_sessions / 150}
        for c in self.concurrencies:
            steps[f"raw - {c}"] = self.raw_seconds + 1
        steps["operator"] = 3.0
        live = writers = 0
        for index, stage in enumerate(self.stages):
            live += stage.size
            writers += stage.writers
            steps[f"populate {index}"] = 4.0 + stage.size / (150 if stage.seeded else 50)
            steps[f"idle {index}"] = self.idle_seconds + 3 + live / 5000
            if stage.full:
                for c in self.concurrencies:
                    steps[f"raw {index} {c}"] = self.raw_seconds + 1
                    steps[f"write {index} {c}"] = self.write_seconds + 1
                    steps[f"noop {index} {c}"] = self.noop_seconds + 1
                steps[f"warm writers {index}"] = 1.0 + writers / (150 if index == 0 else 80)
                steps[f"warm pool {index}"] = 1.0 + min(self.noop_pool, live) / 200
                steps[f"duplicates {index}"] = 3.0 + stage.duplicates / 20
            if index == self.last_full:
                for variant in WRITE_VARIANTS:
                    steps[f"variant {variant.label}"] = self.raw_seconds + 2
            for batch, (label, count, _) in enumerate(self.expiry_batches(index)):
                seconds = self.staggered_window + 10 if label == "staggered" else 5 + count / 50
                steps[f"expiry {index} {batch}"] = seconds
        return steps


async def measure(
    plan: Plan, plane: LocalControlPlane, workdir: Path, progress: Progress
) -> Results:
    """Run every phase against *plane*; the operator is started and stopped here."""
    async with (
        ApiServer(plane.server, plane.admin_token, plane.ca_file) as api,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
        ) as http,
    ):
        kubernetes = (await api.expect("GET", "/version"))["gitVersion"]
        async with http.get(
            plane.etcd_url + "/version", ssl=plane.etcd_client_context()
        ) as response:
            etcd = (await response.json())["etcdserver"]
        results = Results(
            machine=describe_machine(str(kubernetes), str(etcd)),
            mode=plan.mode,
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        token = await _grant_heartbeats(api)
        operator = OperatorProcess(
            plane.kubeconfig,
            workdir / "operator.log",
            plan.operator_env(),
            log_level="WARNING",
        )
        pids = {
            "kube-apiserver": plane.component("kube-apiserver").pid,
            "etcd": plane.component("etcd").pid,
            "bench": os.getpid(),
        }
        bench = Bench(api, http, operator, pids, token, progress, plan.cleanup_wait)
        try:
            await _run_phases(plan, bench, results)
        except Exception as error:  # report what was measured before the failure
            results.error = f"{type(error).__name__}: {error}"
            progress.note(f"aborted: {results.error}")
            if not operator.alive():
                progress.note(f"operator log (end):\n{operator.log_tail()}")
        finally:
            operator.stop()
        return results


async def _grant_heartbeats(api: ApiServer) -> str:
    """The namespaces, a ServiceAccount allowed to beat Sessions in the watched one, and a
    token for it."""
    await create_namespaces(api, [WATCHED, UNWATCHED])
    await create_heartbeat_role(api, HEARTBEAT_ROLE)
    await grant_account(api, WATCHED, CLIENT, HEARTBEAT_ROLE)
    return await mint_token(api, WATCHED, CLIENT, CLIENT_TOKEN_SECONDS)


@dataclass
class _Population:
    """The Sessions added so far, by kind (see :class:`Stage`)."""

    live: int = 0
    writers: list[SessionName] = field(default_factory=list)
    idlers: list[SessionName] = field(default_factory=list)


async def _run_phases(plan: Plan, bench: Bench, results: Results) -> None:
    progress = bench.progress
    progress.start("raw sessions", "ready sessions in an unwatched namespace")
    unwatched = [SessionName(UNWATCHED, f"raw-{i:05d}") for i in range(plan.raw_sessions)]
    await seed_unwatched(bench.api, unwatched)
    writer = StatusWriter(bench.api)
    for c in plan.concurrencies:
        progress.start(f"raw - {c}", f"operator not started: raw status PATCH, c={c}")
        results.raw.append(
            await write_variant(bench, RAW, 0, Rotation(unwatched), c, plan.raw_seconds, writer)
        )

    progress.start("operator", "starting the operator")
    bench.operator.spawn()
    await bench.operator.wait_ready(bench.http)

    held = _Population()
    for index, stage in enumerate(plan.stages):
        held.live += stage.size
        held.writers += stage.names("w")
        held.idlers += stage.names("i")
        await _populate(plan, bench, results, index, stage, held.live)

        lapsing = [ref.name for ref in stage.names("u")]
        progress.start(
            f"idle {index}",
            f"N={held.live:,}: operator idle beside a standby, {len(lapsing)} leases fall due",
        )
        results.idle.append(await _idle_with_standby(bench, held.live, lapsing, plan.idle_seconds))
        held.live -= len(lapsing)
        if stage.full:
            await _full_phases(plan, bench, results, index, held, unwatched, writer)
        await _expiries(plan, bench, results, index, held)


async def _full_phases(
    plan: Plan,
    bench: Bench,
    results: Results,
    index: int,
    held: _Population,
    unwatched: list[SessionName],
    writer: StatusWriter,
) -> None:
    """The raw ceiling, the write variants (at the largest full N) and the heartbeats."""
    for c in plan.concurrencies:
        bench.progress.start(f"raw {index} {c}", f"N={held.live:,}: raw status PATCH, c={c}")
        results.raw.append(
                await write_variant(bench, RAW, held.live, Rotation(unwatched), c,
                                    plan.raw_seconds, writer)
            )  # fmt: skip
    if index == plan.last_full:
        await _write_variants(plan, bench, results, held, unwatched, writer)
    await _heartbeats(plan, bench, results, index, held, plan.stages[index].names("d"))


async def _populate(
    plan: Plan, bench: Bench, results: Results, index: int, stage: Stage, live: int
) -> None:
    """Add *stage*'s Sessions and wait until the operator holds all *live* ones ready."""
    population = [(ref, WRITER_LEASE) for kind in "weu" for ref in stage.names(kind)]
    population += [(ref, IDLER_LEASE) for kind in "id" for ref in stage.names(kind)]
    if stage.seeded:
        bench.progress.start(f"populate {index}", f"N={live:,}: seeding sessions")
        added = await populate_seeded(bench, population, live, within=plan.setup_timeout)
    else:
        bench.progress.start(f"populate {index}", f"N={live:,}: creating sessions")
        added = await populate(bench, population, live, within=plan.setup_timeout)
    results.populations.append(added)


async def _write_variants(
    plan: Plan,
    bench: Bench,
    results: Results,
    held: _Population,
    unwatched: list[SessionName],
    writer: StatusWriter,
) -> None:
    """The heartbeat's write made by other means, to split what it costs the apiserver.
    The watched targets are idlers past the noop pool: ready, a 3600 s interval, never
    beaten."""
    watched = held.idlers[-plan.raw_sessions :]
    for variant in WRITE_VARIANTS:
        bench.progress.start(f"variant {variant.label}", f"N={held.live:,}: {variant.description}")
        targets = watched if variant.watched else unwatched
        await writer.prime(targets)
        results.variants.append(
            await write_variant(bench, variant, held.live, Rotation(targets),
                                plan.variant_concurrency, plan.raw_seconds, writer)
        )  # fmt: skip


async def _heartbeats(
    plan: Plan,
    bench: Bench,
    results: Results,
    index: int,
    held: _Population,
    duplicates: list[SessionName],
) -> None:
    """Heartbeats that must write, heartbeats inside the interval, duplicate first beats."""
    progress, live = bench.progress, held.live
    progress.start(f"warm writers {index}", f"N={live:,}: first heartbeat of every writer")
    await warm_up(bench, held.writers)
    await asyncio.sleep(WRITER_GAP)  # every writer is outside its interval again
    write_targets = Rotation(held.writers, WRITER_GAP)
    for c in plan.concurrencies:
        progress.start(f"write {index} {c}", f"N={live:,}: heartbeats that write, c={c}")
        results.writes.append(
            await heartbeats(bench, "write", live, write_targets, c, plan.write_seconds)
        )

    progress.start(f"warm pool {index}", f"N={live:,}: first heartbeat of the noop pool")
    pool = held.idlers[: plan.noop_pool]
    await warm_up(bench, pool)
    noop_targets = Rotation(pool)
    for c in plan.concurrencies:
        progress.start(f"noop {index} {c}", f"N={live:,}: heartbeats inside the interval, c={c}")
        results.noops.append(
            await heartbeats(bench, "noop", live, noop_targets, c, plan.noop_seconds)
        )

    progress.start(f"duplicates {index}", f"N={live:,}: duplicate heartbeats")
    results.duplicates.append(
        await duplicate_heartbeats(
            bench, live, duplicates, plan.duplicate_copies, max(plan.concurrencies)
        )
    )


async def _expiries(
    plan: Plan, bench: Bench, results: Results, index: int, held: _Population
) -> None:
    """The expiry runs :meth:`Plan.expiry_batches` lists after stage *index*, each with the
    next unused expirers of that stage."""
    ceiling = max(
        (run.load.throughput for run in results.raw if run.live <= held.live), default=0.0
    )
    unused = iter(plan.stages[index].names("e"))
    for batch, (label, count, loaded) in enumerate(plan.expiry_batches(index)):
        names = [ref.name for _, ref in zip(range(count), unused, strict=False)]
        title = (
            f"staggered expiry over {plan.staggered_window:.0f} s"
            if label == "staggered"
            else f"{len(names):,} leases end at once"
        )
        under = ", under heartbeats" if loaded else ""
        bench.progress.start(f"expiry {index} {batch}", f"N={held.live:,}: {title}{under}")
        first = datetime.now(UTC).timestamp() + patch_lead(len(names), ceiling)
        if label == "staggered":
            deadlines = staggered(names, datetime.fromtimestamp(first, UTC), plan.staggered_window)
        else:
            deadlines = same_instant(names, datetime.fromtimestamp(round(first), UTC))
        background = None
        if loaded:
            targets = Rotation(held.writers, WRITER_GAP)
            background = heartbeat_load(bench, targets, plan.load_concurrency, EXPIRY_LOAD_LIMIT)
        results.expiries.append(
            await expiry(bench, label, held.live, WATCHED, deadlines, plan.expiry_grace,
                         background)
        )  # fmt: skip
        held.live -= len(names)


async def _idle_with_standby(bench: Bench, live: int, lapsing: list[str], seconds: float) -> Idle:
    """The idle cost of the leader and of a second replica started for the purpose (it
    watches and serves heartbeats but takes no lifecycle step), stopped afterwards; the
    *lapsing* Sessions' leases fall due, spread over the window. The standby is metered
    from its start to ready too (its first LIST)."""
    standby = OperatorProcess(
        bench.operator.kubeconfig,
        bench.operator.log_path.with_name("standby.log"),
        bench.operator.env,
        log_level="WARNING",
    )
    standby.spawn()
    try:
        async with CostMeter({"standby": standby.pid}) as start:
            await standby.wait_ready(bench.http)
        bench.standby = standby
        await asyncio.sleep(STANDBY_SETTLE_SECONDS)
        first = datetime.now(UTC) + timedelta(seconds=IDLE_DUE_LEAD_SECONDS)
        deadlines = staggered(lapsing, first, max(0.0, seconds - 2 * IDLE_DUE_LEAD_SECONDS))
        await set_deadlines(bench, WATCHED, deadlines)
        cost = await idle_cost(bench, seconds)
        return Idle(live, len(lapsing), cost, start.result["standby"])
    finally:
        bench.standby = None
        standby.stop()


def _write_json(results_dir: Path, document: dict[str, object], suffix: str = "") -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{stamp}{suffix}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny numbers")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument(
        "--sessions",
        type=int,
        help=f"add a last tier of this many sessions (more than {FULL_SESSIONS:,}, e.g. 50000):"
        " idle cost and staggered expiry only; with --field, the failover and restart at this"
        " many (with --quick too)",
    )
    parser.add_argument(
        "--field",
        action="store_true",
        help="the field tier instead: clients with their own tokens over TLS to two replicas,"
        " Sessions with Pods, unrelated Pod churn, failover and restart at --sessions",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --field: profile the apiserver's CPU (Go pprof) and both replicas' Python"
        " (py-spy) in each sustain step, the standby's through the failover, and the replicas'"
        " from their restart to ready; kept"
        " beside the JSON and summarised in it",
    )
    parser.add_argument(
        "--pin-control-plane",
        action="store_true",
        help="with --field: pin the control plane to half the CPUs and the replicas and the"
        " clients to the other half, as on a cluster's separate nodes (by default all share"
        " every CPU)",
    )
    parser.add_argument(
        "--steps",
        type=parse_step_sizes,
        metavar="N[,N...]",
        help="with --field: sustain steps of these many clients (e.g. 1830, one step past"
        " the apiserver's capacity) instead of the shares of the goal; as with those, the"
        " steps stop at the first not sustained",
    )
    parser.add_argument(
        "--apiserver-alone",
        action="store_true",
        help="instead: the apiserver alone under the field tier's first step's write load, no"
        " operator (evenly spaced and Poisson merge patches, then the heartbeat's patches with"
        " two watches and the replicas' CPU burned beside), to place a step's beat tail",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an operator setting for the default tier, by its configuration file key (e.g."
        " expiryWarning=30s); repeatable; recorded in the JSON's plan",
    )
    args = parser.parse_args(argv)
    settings = tuple(_setting(parser, given) for given in args.setting)
    if (args.profile or args.pin_control_plane or args.steps) and not args.field:
        parser.error("--profile, --pin-control-plane and --steps go with --field")
    if args.sessions is not None and args.sessions < FULL_SESSIONS:
        parser.error(f"--sessions must be at least {FULL_SESSIONS:,}")
    if args.apiserver_alone and (args.field or args.sessions is not None or settings):
        parser.error("--apiserver-alone goes alone (with --quick and --results-dir at most)")
    if args.apiserver_alone:
        return _run_apiserver_alone(
            AlonePlan.quick() if args.quick else AlonePlan.full(), args.results_dir
        )
    if args.field:
        field_plan = (
            FieldPlan.quick(args.sessions) if args.quick
            else FieldPlan.full(args.sessions or FIELD_SESSIONS)
        )  # fmt: skip
        if args.steps:
            steps = ", ".join(f"{size:,}" for size in args.steps)
            field_plan = replace(
                field_plan, step_sizes=args.steps, mode=f"{field_plan.mode}, steps {steps}"
            )
        return _run_field(
            field_plan, args.results_dir, profile=args.profile, pinned=args.pin_control_plane
        )
    plan = Plan.quick() if args.quick else Plan.full(args.sessions or FULL_SESSIONS)
    plan = replace(plan, settings=settings)
    progress = Progress(plan.steps())
    started = time.monotonic()
    with _control_plane(progress) as (plane, workdir):
        results = _until_interrupted(progress, measure(plan, plane, workdir, progress))
    if results is None:
        return 130
    results.seconds = time.monotonic() - started
    results.notes.extend(_notes(plan))
    progress.finish()
    table = render(results)
    document = as_json(results, table) | {"plan": asdict(plan)}
    return _report(table, _write_json(args.results_dir, document), failed=bool(results.error))


def parse_step_sizes(given: str) -> tuple[int, ...]:
    """``--steps 366,1830`` as (366, 1830): positive client counts."""
    try:
        sizes = tuple(int(size) for size in given.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{given!r}: expected client counts such as 366,1830")
    return sizes


def _setting(parser: argparse.ArgumentParser, given: str) -> tuple[str, str]:
    """A ``--setting KEY=VALUE`` as (key, value); a usage error for an unknown key."""
    key, _, value = given.partition("=")
    if key not in FILE_KEYS.values() or not value:
        parser.error(f"--setting {given!r}: expected KEY=VALUE with a configuration file key")
    return key, value


def _field_of(key: str) -> str:
    """The settings field of configuration file key *key*."""
    return next(field for field, file_key in FILE_KEYS.items() if file_key == key)


def _until_interrupted(progress: Progress, measurement: Coroutine[Any, Any, R]) -> R | None:
    """Run *measurement*; ``None`` if Ctrl-C stopped it."""
    try:
        return asyncio.run(measurement)
    except KeyboardInterrupt:
        progress.note("interrupted")
        return None


def _report(table: str, path: Path, *, failed: bool) -> int:
    """Print the table and where its JSON went; the exit code."""
    print(table)
    print(f"\nJSON: {path}")
    return 1 if failed else 0


@contextlib.contextmanager
def _control_plane(progress: Progress) -> Iterator[tuple[LocalControlPlane, Path]]:
    """A local control plane (etcd with fsync) with the CRD installed, in a scratch
    directory: (the plane, the directory)."""
    chain = ensure_built(toolchain(repo_root=REPO))
    with tempfile.TemporaryDirectory(prefix="xg2g-bench-") as scratch:
        workdir = Path(scratch)
        progress.start("control plane", "starting etcd, kube-apiserver, kube-controller-manager")
        with LocalControlPlane(chain, workdir=workdir / "controlplane", etcd_fsync=True) as plane:
            plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/sessions.xg2g.io")  # fmt: skip
            yield plane, workdir


def _run_field(plan: FieldPlan, results_dir: Path, *, profile: bool, pinned: bool) -> int:
    """The field tier: one table and its JSON (``<timestamp>-field.json``), the replicas'
    logs (``<timestamp>-replica-<x>.log``: warnings and errors, as the chart logs), and with
    *profile* the profiles (``<timestamp>-apiserver-<N>.pprof``, ``<timestamp>-<replica>-<N>.txt``
    and ``<timestamp>-<replica>-restart.txt``)."""
    progress = Progress(plan.progress_steps())
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    profile_to = results_dir / stamp if profile else None
    results_dir.mkdir(parents=True, exist_ok=True)
    with _control_plane(progress) as (plane, workdir):
        measurement = measure_field(plan, plane, workdir, progress, profile_to, pinned=pinned)
        results = _until_interrupted(progress, measurement)
        for log in sorted(workdir.glob("replica-*.log")):
            shutil.copyfile(log, results_dir / f"{stamp}-{log.name}")
    if results is None:
        return 130
    results.seconds = time.monotonic() - started
    results.notes.extend(field_notes(plan))
    progress.finish()
    table = render_field(results)
    path = _write_json(results_dir, field_json(results, table) | {"plan": asdict(plan)}, "-field")
    return _report(table, path, failed=bool(results.error))


def _run_apiserver_alone(plan: AlonePlan, results_dir: Path) -> int:
    """The apiserver alone under a step's load: one table and its JSON
    (``<timestamp>-apiserver-alone.json``)."""
    progress = Progress(plan.progress_steps())
    with _control_plane(progress) as (plane, _):
        measured = _until_interrupted(progress, measure_alone(plan, plane, progress))
    if measured is None:
        return 130
    progress.finish()
    machine, runs = measured
    table = render_alone(plan, machine, runs)
    path = _write_json(results_dir, alone_json(plan, machine, table, runs), "-apiserver-alone")
    return _report(table, path, failed=False)


def _notes(plan: Plan) -> list[str]:
    first, *rest = plan.stages
    return [
        "N = live Sessions the operator holds (it watches one namespace). c = concurrent "
        "requests of one Python aiohttp client in a closed loop, on the same 2 cores.",
        "Raw ceiling: status merge-PATCHes of lastHeartbeat + leaseExpiresAt (what a "
        "heartbeat writes) with the admin token to ready Sessions in a namespace the "
        "operator does not watch; N = 0 before the operator starts, then with it running.",
        f"The first {first.size:,} sessions are created as users do and made ready by the "
        f"operator; the other {sum(stage.size for stage in rest):,} are seeded (while it "
        "runs) as it leaves a ready session: status from its lifecycle function, state "
        "label and finalizer.",
        "apiserver columns are deltas of its own apiserver_request_total: writes = "
        "successful mutations of Sessions and Events; calls add refused writes (409/422), "
        "GET/LIST of Sessions and TokenReviews/SubjectAccessReviews (watches excluded).",
        "Expiry lag = time the stopped status is seen on a watch minus leaseExpiresAt, "
        "both on this machine's clock; leases are shortened by a status merge-patch first.",
        "Idle: no heartbeat, but some leases fall due, spread over the window (a real "
        "cluster's idle); a standby replica runs beside the leader, metered also from its "
        "start to ready (its LIST).",
        "Cost: the peak resident set of each window (VmHWM, reset as it opens) and "
        "utime+stime from /proc over the window; "
        "CPU % is of one core. 'bench' is this load generator itself.",
        "Operator settings: "
        + (", ".join(f"{key}={value}" for key, value in plan.settings) or "the defaults")
        + ".",
    ]


if __name__ == "__main__":
    sys.exit(main())
