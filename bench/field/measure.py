"""What every field phase shares: the running parts, a metered window, open-loop raw writes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.context import SessionName
from bench.cost import CostMeter, ProcessCost
from bench.field.churn import PodChurn
from bench.field.clients import BeatStats, Fleet
from bench.field.replicas import ReplicaSet
from bench.load import Latency
from harness.kube import ApiCalls, ApiServer
from harness.progress import Progress
from session_operator.k8s.outage_record import OUTAGES_CONFIGMAP, WINDOWS_KEY, decode_windows
from session_operator.models import STATE_LABEL
from session_operator.outage_rule import OutageWindow

HEARTBEAT_RESULTS = "xg2g_sessions_heartbeat_total"
OUTAGE_RECORD = f"/api/v1/namespaces/default/configmaps/{OUTAGES_CONFIGMAP}"
"""The replicas' outage record (lease rule 8; their leader-election namespace)."""
STOPPED_STATES = ("stopping", "stopped", "failed")


@dataclass
class Field:
    """The running parts of the field tier."""

    api: ApiServer
    http: aiohttp.ClientSession
    """Trusts the replicas' certificate: their ``/metrics`` and ``/readyz``."""
    replicas: ReplicaSet
    fleet: Fleet
    churn: PodChurn
    plane_pids: dict[str, int]
    """kube-apiserver, etcd and the benchmark itself."""
    progress: Progress

    def meter(self) -> CostMeter:
        """A meter over the live replicas, the control plane and the benchmark."""
        return CostMeter({**self.plane_pids, **self.replicas.pids()})

    async def served(self) -> dict[str, dict[str, float]]:
        """Each live replica's heartbeat results so far (extended, noop, ...)."""
        served = {}
        for replica in self.replicas:
            if replica.process.alive():
                with contextlib.suppress(aiohttp.ClientError):
                    served[replica.name] = await replica.metric(
                        self.http, HEARTBEAT_RESULTS, "result"
                    )
        return served

    async def stopped_sessions(self, namespaces: Sequence[str]) -> Evidence:
        """Sessions of *namespaces* stopping or stopped (none should be, unless meant): how
        many, a sample of their status, and the outage record as it stands."""
        selector = f"{STATE_LABEL} in ({','.join(STOPPED_STATES)})"
        stopped: list[dict[str, Any]] = []
        for namespace in namespaces:
            listing = await self.api.expect(
                "GET",
                f"/apis/xg2g.io/v1alpha1/namespaces/{namespace}/sessions",
                params={"labelSelector": selector},
            )
            stopped += listing.get("items") or ()
        status, record = await self.api.call("GET", OUTAGE_RECORD)
        windows = [] if status == 404 else _record_windows(record)
        return Evidence(
            len(stopped),
            tuple(_stop_evidence(item) for item in stopped[:EVIDENCE_SAMPLE]),
            tuple(windows),
        )


EVIDENCE_SAMPLE = 10
"""How many stopped Sessions a phase keeps the status of."""


@dataclass(frozen=True)
class Evidence:
    """What the cluster showed at a phase's end: the tenant Sessions stopped under their
    clients (a sample of their status) and the outage record (lease rule 8)."""

    stopped: int = 0
    sample: tuple[dict[str, Any], ...] = ()
    outages: tuple[OutageWindow, ...] = ()

    def outage_seconds(self, since: float, until: float) -> float:
        """How many seconds of ``[since, until]`` (Unix time) the outage record covers: a
        lease that lapsed in them is kept while its client may be owed a grace."""
        return sum(
            max(0.0, min(until, window.end.timestamp()) - max(since, window.start.timestamp()))
            for window in self.outages
        )

    def as_dict(self) -> dict[str, Any]:
        """As the JSON document keeps it."""
        outages = [str(window) for window in self.outages]
        return {"stopped": self.stopped, "sample": list(self.sample), "outages": outages}


def _record_windows(record: dict[str, Any]) -> list[OutageWindow]:
    return decode_windows((record.get("data") or {}).get(WINDOWS_KEY, "[]"))


def _stop_evidence(session: dict[str, Any]) -> dict[str, Any]:
    """The facts that tell why a Session stopped: its times and its LeaseValid condition."""
    metadata, status = session.get("metadata") or {}, session.get("status") or {}
    conditions = status.get("conditions") or ()
    lease_valid: dict[str, Any] = next((c for c in conditions if c.get("type") == "LeaseValid"), {})
    return {
        "session": f"{metadata.get('namespace')}/{metadata.get('name')}",
        "created": metadata.get("creationTimestamp"),
        **{key: status.get(key) for key in ("lastHeartbeat", "leaseExpiresAt", "stoppedAt")},
        "leaseValid": lease_valid.get("message"),
    }


@dataclass
class Window:
    """What one metered window cost: apiserver calls, the processes, and what each replica
    served."""

    seconds: float
    calls: ApiCalls
    cost: dict[str, ProcessCost]
    served: dict[str, dict[str, float]]
    beats: BeatStats = field(default_factory=BeatStats)
    apiserver_patch_p99_ms: float = math.nan
    """The p99 of the Session status patches as the apiserver itself timed them."""

    def per_second(self, count: float) -> float:
        """*count* over the window, per second."""
        return count / self.seconds if self.seconds > 0 else 0.0

    def cpu_ms_per_beat(self, replica: str) -> float:
        """Milliseconds of *replica*'s CPU per heartbeat it answered."""
        answered = sum(self.served.get(replica, {}).values())
        cost = self.cost.get(replica)
        if cost is None or not answered:
            return float("nan")
        return 1000 * cost.cpu_seconds / answered


async def metered_window(
    scene: Field,
    seconds: float,
    label: str,
    beside: Callable[[], Coroutine[Any, Any, None]] | None = None,
    until: asyncio.Future[Any] | None = None,
) -> Window:
    """Let the running load go on for *seconds* (with *beside* running too, if given), and
    measure it: apiserver counters, CPU and peak memory, heartbeat results, the clients'
    beats. With *until*, the window first lasts until that is done (however it ends: its
    awaiter sees how), then *seconds* more."""
    served_before = await scene.served()
    before = await scene.api.request_counts()
    scene.fleet.window()
    started = time.monotonic()
    async with scene.meter() as meter:
        side = asyncio.create_task(beside()) if beside is not None else None
        while until is not None and not until.done():
            elapsed = time.monotonic() - started
            scene.progress.update(0.0, f"{label}: {elapsed:.0f} s, waiting")
            await asyncio.wait({until}, timeout=1.0)
        tail = time.monotonic()
        while (elapsed := time.monotonic() - tail) < seconds:
            scene.progress.update(elapsed / seconds, f"{label}: {elapsed:.0f}/{seconds:.0f} s")
            await asyncio.sleep(min(1.0, seconds - elapsed))
        if side is not None:
            side.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await side
    wall = time.monotonic() - started
    beats = scene.fleet.window()
    after = await scene.api.request_counts()
    served = {
        name: {key: value - served_before.get(name, {}).get(key, 0.0) for key, value in now.items()}
        for name, now in (await scene.served()).items()
    }
    calls, apiserver_p99 = after.since(before), after.status_patch_p99_ms(before)
    return Window(wall, calls, meter.result, served, beats, apiserver_p99)


@dataclass(frozen=True)
class OpenLoop:
    """Requests sent at a fixed rate, whatever the answers' pace."""

    rate: float
    seconds: float
    latency: Latency
    statuses: Counter[int]
    apiserver_p99_ms: float = math.nan
    """The p99 of the same requests as the apiserver itself timed them, where known."""
    samples: tuple[tuple[float, float], ...] = ()
    """Each request: (when it went out, in seconds from the start; its duration)."""

    def p99_ms_by_part(self, parts: int) -> list[float]:
        """The p99, in ms, of the requests sent in each of *parts* equal parts of the run."""
        span = self.seconds / parts
        return [
            Latency.of([taken for at, taken in self.samples if part <= at / span < part + 1]).p99_ms
            for part in range(parts)
        ]


def arrivals(rate: float, seconds: float, chance: random.Random) -> list[float]:
    """When, in seconds from the start, the requests of an open loop at *rate* per second
    go out over *seconds*: a Poisson process (exponential gaps), as the beats of many
    clients do, each on its own jittered timer. Evenly spaced requests are an easier load:
    at 144/s for 160 s their p99 was 52.6 ms against 224.8 ms for Poisson ones
    (``bench/results/20261206T171701Z-apiserver-alone.json``)."""
    times: list[float] = []
    at = chance.expovariate(rate)
    while at < seconds:
        times.append(at)
        at += chance.expovariate(rate)
    return times


def even_arrivals(rate: float, seconds: float) -> list[float]:
    """Evenly spaced instants at *rate* per second over *seconds* (one client's timer)."""
    return [tick / rate for tick in range(int(rate * seconds))]


async def open_loop(
    targets: Sequence[SessionName],
    send: Callable[[SessionName], Awaitable[int]],
    rate: float,
    seconds: float,
    times: Sequence[float] | None = None,
) -> OpenLoop:
    """Send to *targets* in turn at *rate* per second for *seconds*, at the instants of
    :func:`arrivals` (or at *times*): each request at its time, not after the previous
    answer."""
    samples: list[tuple[float, float]] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()

    async def one(ref: SessionName) -> None:
        sent = time.monotonic()
        status = await send(ref)
        samples.append((sent - started, time.monotonic() - sent))
        statuses[status] += 1

    tasks: list[asyncio.Task[None]] = []
    schedule = arrivals(rate, seconds, random.Random()) if times is None else times
    for index, at in enumerate(schedule):
        delay = started + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(targets[index % len(targets)])))
    await asyncio.gather(*tasks)
    latency = Latency.of([taken for _, taken in samples])
    return OpenLoop(
        rate, time.monotonic() - started, latency, statuses, samples=tuple(sorted(samples))
    )
