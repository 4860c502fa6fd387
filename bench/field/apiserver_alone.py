"""``python -m bench --apiserver-alone``: the apiserver under a sustain step's write load,
without the operator, to place a step's beat tail.

A sustain step's beats pass through the replicas and land on the apiserver as status
patches; the step's p99 bound is twice that of raw patches at the same rate. This runs, on a
control plane of its own and one after another, raw patches to Sessions shaped as the
tenants' at one rate, for a window as long as a step's, with the Pods churning:

1. evenly spaced merge patches;
2. merge patches at the instants of a Poisson process (the field tier's raw rows);
3. the heartbeat's own compare-and-set JSON patches, Poisson, with two watches of every
   Session consumed in this process (as the two replicas' stores) and CPU burned beside it
   at the share the replicas and the clients used in the field run's steps.

For each: the p99 as sent and as the apiserver timed it, and the p99 over each fifth of the
window, which shows how the apiserver's tail grows as its watch cache and heap fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bench.access import create_namespaces
from bench.context import SETUP_CONCURRENCY, SessionName
from bench.field.churn import PodChurn
from bench.field.measure import OpenLoop, even_arrivals, open_loop
from bench.field.plan import FieldPlan, beat_rate
from bench.field.tenants import workload_session
from bench.load import bounded_gather
from bench.phases import StatusWriter
from bench.population import create_initialised, default_lifecycle
from harness import LocalControlPlane
from harness.kube import ApiServer
from harness.machine import Machine, describe_machine
from harness.progress import Progress
from harness.table import render_table
from session_operator.k8s.rest import MERGE_PATCH
from session_operator.models import sessions_path

NAMESPACE = "apiserver-alone"
WATCHERS = 2
"""Watches of every Session beside the patches: the two replicas' stores."""
PARTS = 5
LOADS: tuple[tuple[str, bool, bool], ...] = (
    # (label, the heartbeat's guarded patch with watches and burned CPU, evenly spaced)
    ("merge patches, evenly spaced", False, True),
    ("merge patches, Poisson", False, False),
    (f"the heartbeat's JSON patches, Poisson, {WATCHERS} watches, CPU burned beside", True, False),
)
HEADERS = ("load", "requests", "p50", "p99", "p99 as the apiserver timed it", "p99 by fifth")


@dataclass(frozen=True)
class AloneRun:
    """One load and what it measured."""

    label: str
    loop: OpenLoop


@dataclass(frozen=True)
class AlonePlan:
    """The load: Sessions, rate, window, churn, and the CPU burned beside the third run."""

    sessions: int
    rate: float
    window: float
    churn_pods: int
    churn_rate: float
    burn_cores: float

    @classmethod
    def full(cls) -> AlonePlan:
        """The field tier's first step as it ran on this machine: 758 clients' beats over a
        step's window, with the step's Pod churn. The burned CPU is what both replicas and
        the clients used in that step (15 %, 16 % and 10 % of a core,
        ``bench/results/20261206T140536Z-field.json``)."""
        full = FieldPlan.full()
        return cls(
            sessions=758,
            rate=beat_rate(758),
            window=full.window,
            churn_pods=full.churn_pods,
            churn_rate=full.churn_rate,
            burn_cores=0.4,
        )

    @classmethod
    def quick(cls) -> AlonePlan:
        """A smoke run with tiny numbers."""
        return cls(
            sessions=40, rate=beat_rate(40), window=5.0, churn_pods=40, churn_rate=10.0,
            burn_cores=0.1,
        )  # fmt: skip

    def progress_steps(self) -> dict[str, float]:
        """The run's steps with their expected seconds (the progress bar's weights)."""
        return {
            "control plane": 8.0,
            "sessions": self.sessions / 100 + self.churn_pods / 150,
            **{label: self.window for label, _, _ in LOADS},
        }


async def measure_alone(
    plan: AlonePlan, plane: LocalControlPlane, progress: Progress
) -> tuple[Machine, list[AloneRun]]:
    """Run the three loads against *plane*; the machine (at the start) and the runs."""
    async with ApiServer(plane.server, plane.admin_token, plane.ca_file, connections=256) as api:
        kubernetes = str((await api.expect("GET", "/version"))["gitVersion"])
        machine = describe_machine(kubernetes, "see the default tier")
        refs = [SessionName(NAMESPACE, f"raw-{index:05d}") for index in range(plan.sessions)]
        progress.start("sessions", f"{plan.sessions:,} Sessions shaped as the tenants'")
        await create_namespaces(api, [NAMESPACE])
        lifecycle = default_lifecycle()

        async def create(ref: SessionName) -> None:
            # As the operator leaves it once its Pod runs: the heartbeat's patch tests it.
            await create_initialised(api, workload_session(ref), lifecycle, state="new")
            path = sessions_path(ref.namespace, ref.name, "status")
            await api.expect("PATCH", path, {"status": {"state": "ready"}}, MERGE_PATCH)

        await bounded_gather(refs, create, SETUP_CONCURRENCY)
        churn = PodChurn(api, plan.churn_pods)
        await churn.fill()
        writer = StatusWriter(api)
        await writer.prime(refs)
        runs = []
        for label, guarded, evenly in LOADS:
            progress.start(label, label)
            send = writer.guarded if guarded else writer.merge
            loop = await _under_load(api, plan, churn, refs, send, evenly=evenly, watched=guarded)
            runs.append(AloneRun(label, loop))
        return machine, runs


async def _under_load(
    api: ApiServer,
    plan: AlonePlan,
    churn: PodChurn,
    refs: list[SessionName],
    send: Callable[[SessionName], Awaitable[int]],
    *,
    evenly: bool,
    watched: bool,
) -> OpenLoop:
    stop = asyncio.Event()
    beside = [asyncio.create_task(churn.run(plan.churn_rate, stop))]
    burners: list[multiprocessing.Process] = []
    if watched:
        version = await api.resource_version(NAMESPACE)
        beside += [asyncio.create_task(_consume(api, version)) for _ in range(WATCHERS)]
        burners = _burn(plan.burn_cores)
    before = await api.request_counts()
    try:
        times = even_arrivals(plan.rate, plan.window) if evenly else None
        loop = await open_loop(refs, send, plan.rate, plan.window, times=times)
    finally:
        stop.set()
        for burner in burners:
            burner.terminate()
        for task in beside[1:]:
            task.cancel()
        for task in beside:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    served = (await api.request_counts()).status_patch_p99_ms(before)
    return replace(loop, apiserver_p99_ms=served)


async def _consume(api: ApiServer, version: str) -> None:
    async for _ in api.watch(NAMESPACE, version):
        pass


def _burn(cores: float) -> list[multiprocessing.Process]:
    """Side processes that keep *cores* of CPU busy (one per whole core, and a part)."""
    shares = [1.0] * int(cores) + ([cores % 1] if cores % 1 else [])
    burners = [
        multiprocessing.Process(target=_busy, args=(share,), daemon=True) for share in shares
    ]
    for burner in burners:
        burner.start()
    return burners


def _busy(share: float) -> None:
    """Spin *share* of every 10 ms and sleep the rest, until terminated."""
    period = 0.01
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < share * period:
            pass
        time.sleep((1 - share) * period)


def render_alone(plan: AlonePlan, machine: Machine, runs: list[AloneRun]) -> str:
    """The table, with the machine and the load it ran."""
    rows = [
        [
            run.label,
            f"{run.loop.latency.count:,} at {run.loop.rate:,.0f}/s",
            f"{run.loop.latency.p50_ms:.1f} ms",
            f"{run.loop.latency.p99_ms:.1f} ms",
            f"{run.loop.apiserver_p99_ms:.1f} ms",
            " / ".join(f"{p99:.0f}" for p99 in run.loop.p99_ms_by_part(PARTS)) + " ms",
        ]
        for run in runs
    ]
    return "\n".join(
        [
            "the apiserver alone under a step's write load, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"machine: {machine.describe()}",
            f"{plan.sessions:,} Sessions with a Pod template, {plan.rate:,.0f} patches/s for "
            f"{plan.window:.0f} s each, {plan.churn_pods:,} unrelated Pods churning at "
            f"{plan.churn_rate:.0f} events/s; no operator runs",
            "",
            render_table(rows, HEADERS),
        ]
    )


def as_json(plan: AlonePlan, machine: Machine, table: str, runs: list[AloneRun]) -> dict[str, Any]:
    """The runs as a JSON-ready dict (the table included, verbatim)."""
    return {
        "mode": "apiserver alone",
        "plan": asdict(plan),
        "machine": machine.as_dict(),
        "table": table,
        "runs": [
            {
                "load": run.label,
                "requests": run.loop.latency.count,
                "rate": run.loop.rate,
                "p50_ms": round(run.loop.latency.p50_ms, 2),
                "p99_ms": round(run.loop.latency.p99_ms, 2),
                "apiserver_p99_ms": round(run.loop.apiserver_p99_ms, 2),
                "p99_ms_by_fifth": [round(p99, 2) for p99 in run.loop.p99_ms_by_part(PARTS)],
                "statuses": {str(status): n for status, n in run.loop.statuses.items()},
            }
            for run in runs
        ],
    }
