"""The measurements of issue 8, each a function over a running control plane and operator.

1. :func:`raw_ceiling`: status merge-PATCHes straight to the apiserver (admin token).
2. :func:`heartbeats`: heartbeats through the operator's HTTP API, that must write
   (interval 1 s, each session beaten at most once per interval) or fall inside the
   interval (pre-beaten sessions with a long interval); :func:`duplicate_heartbeats`:
   concurrent duplicates of one beat.
3. :func:`expiry`: leases set by status patch to end at chosen instants; the lag is the time
   the stop is seen on a watch minus ``leaseExpiresAt``.
4. :func:`idle_cost`, and the operator's CPU and RSS around every measurement above.

Every measurement brackets itself with snapshots of the apiserver's request counters, so
it can say how many writes and calls it caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.cost import CostMeter, ProcessCost
from bench.kube import MERGE_PATCH, ApiCalls, ApiServer, prometheus_samples, sessions_path
from bench.load import Latency, LoadResult, Rotation, bounded_gather, closed_loop, percentile
from bench.operator_process import OperatorProcess
from bench.progress import Progress
from session_operator.config import Settings
from session_operator.lifecycle import InitialiseStatus, LifecycleSettings, next_step
from session_operator.models import STATE_LABEL, Session
from session_operator.runtime import FINALIZER
from session_operator.timestamps import format_timestamp, parse_timestamp

LIVE = ("new", "starting", "ready")
STOPPED = ("stopping", "stopped", "failed")
WRITER_LEASE = {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}
"""Sessions whose every heartbeat writes: interval 1 s, a lease that outlives the run."""
IDLER_LEASE = {"ttlSeconds": 10800, "heartbeatIntervalSeconds": 3600}
"""Sessions beaten again inside their interval: the longest interval the CRD allows."""
WRITER_GAP = 1.05
"""Seconds between the answer to a writer's beat and its next beat (interval + margin)."""
SETUP_CONCURRENCY = 32
WARM_UP_TRIES = 10
WARM_UP_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class SessionName:
    """A Session of the benchmark: namespace and name."""

    namespace: str
    name: str


@dataclass
class Bench:
    """What every measurement uses: the clients, the operator, the processes to meter."""

    api: ApiServer
    http: aiohttp.ClientSession
    operator: OperatorProcess
    pids: dict[str, int]
    token: str
    progress: Progress
    cleanup_wait: float = 1.0
    """Seconds to let follow-up writes (labels, Events) land before the counters are read."""

    async def operator_counters(self, metric: str, label: str) -> dict[str, float]:
        """A counter of the operator's ``/metrics``, by the value of *label*."""
        async with self.http.get(self.operator.url + "/metrics") as response:
            text = await response.text()
        values: dict[str, float] = {}
        for labels, value in prometheus_samples(text, metric):
            key = labels.get(label, "")
            values[key] = values.get(key, 0.0) + value
        return values

    async def ready_sessions(self) -> int:
        """How many sessions the operator holds as ``ready``."""
        states = await self.operator_counters("xg2g_sessions", "state")
        return int(states.get("ready", 0))

    def meter(self) -> CostMeter:
        """A cost meter over the operator, the apiserver, etcd and the benchmark itself."""
        return CostMeter({**self.pids, "operator": self.operator.pid})


# -- setup ------------------------------------------------------------------------------


@dataclass
class Population:
    """Sessions created for one stage, and how long the operator took to make them ready.

    Seeded sessions were created and initialised by the benchmark while the operator was
    stopped; then *ready_seconds* counts from the operator's restart, *readyz_seconds* is
    when it answered ``/readyz``, and *calls* are the operator's writes only.
    """

    live: int
    created: int
    create_seconds: float
    ready_seconds: float
    calls: ApiCalls
    cost: dict[str, ProcessCost]
    seeded: bool = False
    readyz_seconds: float = math.nan

    @property
    def writes_per_session(self) -> float:
        """Successful writes (creates included) per created session until all were quiet."""
        return self.calls.writes / self.created if self.created else math.nan


async def populate(
    bench: Bench,
    sessions: Sequence[tuple[SessionName, dict[str, int]]],
    live: int,
    within: float,
) -> Population:
    """Create *sessions* (name, lease) and wait until *live* sessions are ready and quiet.

    Quiet means no Session or Event write for one second: the operator's label writes,
    Events and kopf's finalizers have all landed.
    """
    before = await bench.api.request_counts()
    started = time.monotonic()
    total = len(sessions)

    async def create(item: tuple[SessionName, dict[str, int]]) -> None:
        ref, lease = item
        body = {
            "apiVersion": "xg2g.io/v1alpha1",
            "kind": "Session",
            "metadata": {"name": ref.name, "namespace": ref.namespace},
            "spec": {"lease": lease},
        }
        await bench.api.expect("POST", sessions_path(ref.namespace), body)

    def created(done: int) -> None:
        bench.progress.update(0.5 * done / total, f"creating sessions {done:,}/{total:,}")

    async with bench.meter() as meter:
        await bounded_gather(list(sessions), create, SETUP_CONCURRENCY, created)
        create_seconds = time.monotonic() - started
        deadline = started + within
        while (ready := await bench.ready_sessions()) < live:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ready:,} of {live:,} sessions ready after {within}s")
            bench.progress.update(0.5 + 0.5 * ready / live, f"sessions ready {ready:,}/{live:,}")
            await asyncio.sleep(0.5)
        ready_seconds = time.monotonic() - started
        await wait_quiet(bench, deadline)
    after = await bench.api.request_counts()
    return Population(
        live=live,
        created=total,
        create_seconds=create_seconds,
        ready_seconds=ready_seconds,
        calls=after.since(before),
        cost=meter.result,
    )


async def populate_seeded(
    bench: Bench,
    sessions: Sequence[tuple[SessionName, dict[str, int]]],
    live: int,
    within: float,
) -> Population:
    """Stop the operator, create *sessions* already initialised (the status the operator's
    own lifecycle would write, the state label and kopf's finalizer set), restart the
    operator and wait until it holds *live* ready sessions and is quiet.

    This is how the large population fits the time budget: the benchmark writes twice per
    session at the apiserver's pace instead of the operator's pipeline of 7 writes, and the
    restart is measured on the way (kopf still records its annotation on every session).
    """
    bench.operator.stop()
    config = Settings()
    lifecycle = LifecycleSettings(
        lease_ttl=config.lease_ttl,
        heartbeat_interval=config.heartbeat_interval,
        stop_timeout=config.stop_timeout,
        retention=config.retention,
    )
    total = len(sessions)

    async def create(item: tuple[SessionName, dict[str, int]]) -> None:
        ref, lease = item
        body = {
            "apiVersion": "xg2g.io/v1alpha1",
            "kind": "Session",
            "metadata": {
                "name": ref.name,
                "namespace": ref.namespace,
                "labels": {STATE_LABEL: "ready"},
                "finalizers": [FINALIZER],
            },
            "spec": {"lease": lease},
        }
        created = await bench.api.expect("POST", sessions_path(ref.namespace), body)
        step = next_step(Session.from_body(created), datetime.now(UTC), lifecycle, None)
        if not isinstance(step, InitialiseStatus) or step.status.get("state") != "ready":
            raise RuntimeError(f"the lifecycle would not make {ref.name} ready: {step!r}")
        path = sessions_path(ref.namespace, ref.name, "status")
        await bench.api.expect("PATCH", path, {"status": step.status}, MERGE_PATCH)

    def created(done: int) -> None:
        bench.progress.update(0.5 * done / total, f"seeding sessions {done:,}/{total:,}")

    started = time.monotonic()
    await bounded_gather(list(sessions), create, SETUP_CONCURRENCY, created)
    create_seconds = time.monotonic() - started

    before = await bench.api.request_counts()
    restarted = time.monotonic()
    bench.operator.spawn()
    await bench.operator.wait_ready(bench.http, within)
    readyz_seconds = time.monotonic() - restarted
    async with bench.meter() as meter:
        deadline = restarted + within
        while (ready := await bench.ready_sessions()) < live:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ready:,} of {live:,} sessions ready after {within}s")
            bench.progress.update(0.5 + 0.5 * ready / live, f"operator holds {ready:,}/{live:,}")
            await asyncio.sleep(0.5)
        await wait_quiet(bench, deadline, window=2.0)
    ready_seconds = time.monotonic() - restarted
    after = await bench.api.request_counts()
    return Population(
        live=live,
        created=total,
        create_seconds=create_seconds,
        ready_seconds=ready_seconds,
        calls=after.since(before),
        cost=meter.result,
        seeded=True,
        readyz_seconds=readyz_seconds,
    )


async def wait_quiet(bench: Bench, deadline: float, window: float = 1.0) -> None:
    """Wait until the apiserver has served no Session or Event write for *window* seconds."""
    previous = await bench.api.request_counts()
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        current = await bench.api.request_counts()
        if current.since(previous).writes == 0:
            return
        previous = current
    raise TimeoutError("Session writes did not stop")


# -- 1. raw ceiling ---------------------------------------------------------------------


@dataclass
class Measurement:
    """One closed-loop run: its load figures, what the apiserver served, what it cost."""

    label: str
    live: int
    load: LoadResult
    calls: ApiCalls
    cost: dict[str, ProcessCost]
    operator_results: dict[str, float] = field(default_factory=dict)
    """Heartbeat results counted by the operator itself (extended, noop, ...)."""

    @property
    def writes_per_op(self) -> float:
        """Successful apiserver writes per 2xx answer."""
        return self.calls.writes / self.load.ok if self.load.ok else math.nan

    @property
    def calls_per_op(self) -> float:
        """apiserver calls (Sessions, Events, reviews; not watches) per 2xx answer."""
        return self.calls.calls / self.load.ok if self.load.ok else math.nan


async def _measure(
    bench: Bench,
    label: str,
    live: int,
    rotation: Rotation[SessionName],
    send: Callable[[SessionName], Any],
    concurrency: int,
    duration: float,
    count_heartbeats: bool = False,
) -> Measurement:
    heartbeats_before = (
        await bench.operator_counters("xg2g_sessions_heartbeat_total", "result")
        if count_heartbeats
        else {}
    )
    before = await bench.api.request_counts()
    gated = rotation.gated_seconds
    async with bench.meter() as meter:
        load = await closed_loop(rotation, send, concurrency, duration, bench.progress.update)
    load.gated_seconds = rotation.gated_seconds - gated
    await asyncio.sleep(bench.cleanup_wait)
    after = await bench.api.request_counts()
    results: dict[str, float] = {}
    if count_heartbeats:
        heartbeats_after = await bench.operator_counters("xg2g_sessions_heartbeat_total", "result")
        results = {
            key: value - heartbeats_before.get(key, 0.0)
            for key, value in heartbeats_after.items()
            if value - heartbeats_before.get(key, 0.0) > 0
        }
    return Measurement(label, live, load, after.since(before), meter.result, results)


async def raw_ceiling(
    bench: Bench,
    live: int,
    targets: Rotation[SessionName],
    concurrency: int,
    duration: float,
) -> Measurement:
    """Status merge-PATCHes (``lastHeartbeat`` and ``leaseExpiresAt``, what a heartbeat
    writes) to *targets*, never two at once on one Session."""
    ttl = timedelta(seconds=IDLER_LEASE["ttlSeconds"])

    async def patch(ref: SessionName) -> int:
        now = datetime.now(UTC)
        body = {
            "status": {
                "lastHeartbeat": format_timestamp(now),
                "leaseExpiresAt": format_timestamp(now + ttl),
            }
        }
        try:
            return await bench.api.send(
                "PATCH", sessions_path(ref.namespace, ref.name, "status"), body, MERGE_PATCH
            )
        except (aiohttp.ClientError, TimeoutError):
            return 0

    return await _measure(bench, "raw", live, targets, patch, concurrency, duration)


# -- 2. heartbeats ----------------------------------------------------------------------


def heartbeat_path(ref: SessionName) -> str:
    """The Kubernetes-native heartbeat path of the operator's API."""
    return f"/api/v3/namespaces/{ref.namespace}/sessions/{ref.name}/heartbeat"


def heartbeat_sender(bench: Bench) -> Callable[[SessionName], Any]:
    """A function that sends one heartbeat and returns the HTTP status (0: no answer)."""
    headers = {"Authorization": f"Bearer {bench.token}"}
    base = bench.operator.url

    async def beat(ref: SessionName) -> int:
        try:
            async with bench.http.post(base + heartbeat_path(ref), headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    return beat


async def warm_up(bench: Bench, targets: Sequence[SessionName]) -> None:
    """Beat every target once, as clients that are already running would have: the API's
    caches (session view, TokenReview, SubjectAccessReview) then hold them."""
    beat = heartbeat_sender(bench)

    async def first(ref: SessionName) -> None:
        # A client retries 503 (apiserver slow or unreachable) and 409 (lease not yet
        # initialised), as the API's Retry-After asks.
        for _ in range(WARM_UP_TRIES):
            status = await beat(ref)
            if status == 200:
                return
            if status not in (0, 409, 503):
                break
            await asyncio.sleep(WARM_UP_RETRY_SECONDS)
        raise RuntimeError(f"heartbeat of {ref.namespace}/{ref.name} answered {status}")

    def done(count: int) -> None:
        bench.progress.update(count / len(targets))

    await bounded_gather(targets, first, SETUP_CONCURRENCY, done)


async def heartbeats(
    bench: Bench,
    label: str,
    live: int,
    targets: Rotation[SessionName],
    concurrency: int,
    duration: float,
) -> Measurement:
    """Heartbeats through the API to *targets* (a :class:`Rotation`: its gap decides
    whether they fall outside the interval and must write, or inside it)."""
    return await _measure(
        bench,
        label,
        live,
        targets,
        heartbeat_sender(bench),
        concurrency,
        duration,
        count_heartbeats=True,
    )


@dataclass
class Duplicates:
    """Concurrent copies of one heartbeat per session: what the apiserver saw."""

    live: int
    sessions: int
    copies: int
    statuses: dict[int, int]
    latency: Latency
    calls: ApiCalls
    operator_results: dict[str, float]

    @property
    def extra_writes(self) -> int:
        """Status writes beyond one per session: what the duplicates cost."""
        return self.calls.status_writes - self.sessions


async def duplicate_heartbeats(
    bench: Bench, live: int, sessions: Sequence[SessionName], copies: int, concurrency: int
) -> Duplicates:
    """Send *copies* heartbeats at once to each session (all outside their interval):
    one may write, every other is a duplicate inside the interval and must not."""
    beat = heartbeat_sender(bench)
    statuses: dict[int, int] = {}
    durations: list[float] = []
    before_results = await bench.operator_counters("xg2g_sessions_heartbeat_total", "result")
    before = await bench.api.request_counts()

    async def burst(ref: SessionName) -> None:
        async def timed() -> None:
            sent = time.perf_counter()
            status = await beat(ref)
            durations.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(timed() for _ in range(copies)))

    def done(count: int) -> None:
        bench.progress.update(count / len(sessions))

    await bounded_gather(sessions, burst, max(1, concurrency // copies), done)
    await asyncio.sleep(bench.cleanup_wait)
    after = await bench.api.request_counts()
    after_results = await bench.operator_counters("xg2g_sessions_heartbeat_total", "result")
    results = {
        key: value - before_results.get(key, 0.0)
        for key, value in after_results.items()
        if value - before_results.get(key, 0.0) > 0
    }
    return Duplicates(
        live,
        len(sessions),
        copies,
        statuses,
        Latency.of(durations),
        after.since(before),
        results,
    )


# -- 3. expiry --------------------------------------------------------------------------


@dataclass
class Expiry:
    """Sessions whose leases were set to end at chosen instants, and when each stop was seen."""

    label: str
    live: int
    sessions: int
    observed: int
    lag_seconds: list[float]
    operator_lag_seconds: list[float]
    reasons: dict[str, int]
    metadata_writes: dict[str, int]
    """Metadata changes seen on the watch after each stop: ``label``, ``annotations``."""
    first_deadline: float
    last_deadline: float
    last_seen: float
    late_patches: int
    calls: ApiCalls
    cost: dict[str, ProcessCost]

    @property
    def lag(self) -> Latency:
        """Watch-observed lag percentiles (ms)."""
        return Latency.of(self.lag_seconds)

    @property
    def drain_seconds(self) -> float:
        """From the first deadline to the last stop seen."""
        return self.last_seen - self.first_deadline

    @property
    def rate(self) -> float:
        """Stops seen per second over :attr:`drain_seconds`."""
        return self.observed / self.drain_seconds if self.drain_seconds > 0 else math.nan

    @property
    def writes_per_expiry(self) -> float:
        """Successful writes (status, metadata, Event) per stop seen."""
        return self.calls.writes / self.observed if self.observed else math.nan

    def operator_lag(self) -> Latency:
        """``stoppedAt - leaseExpiresAt`` percentiles (ms), the operator's own clock."""
        return Latency.of(self.operator_lag_seconds)


@dataclass
class _ExpiryWatch:
    """What the watch saw of the Sessions under test."""

    deadlines: dict[str, datetime]
    stopped: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metadata_writes: dict[str, int] = field(default_factory=dict)
    all_stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, when: float, obj: dict[str, Any]) -> None:
        """Record one watched object: its first stopped status, and later metadata changes."""
        metadata = obj.get("metadata") or {}
        name = metadata.get("name", "")
        if name not in self.deadlines:
            return
        labels, annotations = metadata.get("labels"), metadata.get("annotations")
        previous = self.metadata.get(name)
        self.metadata[name] = (labels, annotations)
        if name in self.stopped and previous is not None:
            if previous[0] != labels:
                self._count("label")
            elif previous[1] != annotations:
                self._count("annotations")
        status = obj.get("status") or {}
        if name not in self.stopped and status.get("state") in STOPPED:
            self.stopped[name] = (when, status)
            if len(self.stopped) == len(self.deadlines):
                self.all_stopped.set()

    def _count(self, kind: str) -> None:
        self.metadata_writes[kind] = self.metadata_writes.get(kind, 0) + 1


async def expiry(
    bench: Bench,
    label: str,
    live: int,
    namespace: str,
    deadlines: dict[str, datetime],
    grace: float,
) -> Expiry:
    """Set ``leaseExpiresAt`` of each Session of *namespace* named in *deadlines* by status
    patch, then watch until every one is seen stopped (or *grace* seconds past the last
    deadline) and the writes that follow a stop have landed. The counters bracket the
    expiries only, not the benchmark's own patches."""
    resource_version = await bench.api.resource_version(namespace)
    seen = _ExpiryWatch(deadlines)

    async def watch() -> None:
        async for when, event in bench.api.watch(namespace, resource_version):
            if event.get("type") in ("ADDED", "MODIFIED"):
                seen.take(when, event.get("object") or {})
                bench.progress.update(len(seen.stopped) / len(deadlines))

    watcher = asyncio.create_task(watch())
    late = 0

    async def patch(name: str) -> None:
        nonlocal late
        expires = format_timestamp(deadlines[name])
        body = {"status": {"leaseExpiresAt": expires}}
        await bench.api.expect("PATCH", sessions_path(namespace, name, "status"), body, MERGE_PATCH)
        if datetime.now(UTC) >= deadlines[name]:
            late += 1

    try:
        await bounded_gather(sorted(deadlines, key=deadlines.__getitem__), patch, SETUP_CONCURRENCY)
        before = await bench.api.request_counts()
        last_deadline = max(deadlines.values()).timestamp()
        async with bench.meter() as meter:
            timeout = max(0.0, last_deadline - time.time()) + grace
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.all_stopped.wait(), timeout)
            await wait_quiet(bench, time.monotonic() + grace)
        after = await bench.api.request_counts()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    lags: list[float] = []
    operator_lags: list[float] = []
    reasons: dict[str, int] = {}
    for name, (when, status) in seen.stopped.items():
        deadline = deadlines[name]
        lags.append(when - deadline.timestamp())
        reason = str(status.get("stopReason", ""))
        reasons[reason] = reasons.get(reason, 0) + 1
        if status.get("stoppedAt"):
            operator_lags.append((parse_timestamp(status["stoppedAt"]) - deadline).total_seconds())
    return Expiry(
        label=label,
        live=live,
        sessions=len(deadlines),
        observed=len(seen.stopped),
        lag_seconds=lags,
        operator_lag_seconds=operator_lags,
        reasons=reasons,
        metadata_writes=seen.metadata_writes,
        first_deadline=min(deadlines.values()).timestamp(),
        last_deadline=last_deadline,
        last_seen=max((when for when, _ in seen.stopped.values()), default=math.nan),
        late_patches=late,
        calls=after.since(before),
        cost=meter.result,
    )


def _millis(instant: datetime) -> datetime:
    """*instant* truncated to milliseconds, as ``leaseExpiresAt`` stores it."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def staggered(names: Sequence[str], start: datetime, window: float) -> dict[str, datetime]:
    """Deadlines for *names*, spread evenly over *window* seconds from *start*."""
    step = window / max(1, len(names))
    return {name: _millis(start + timedelta(seconds=i * step)) for i, name in enumerate(names)}


def same_instant(names: Sequence[str], instant: datetime) -> dict[str, datetime]:
    """One deadline for all of *names*."""
    return dict.fromkeys(names, _millis(instant))


def patch_lead(count: int, patches_per_second: float) -> float:
    """Seconds to allow for *count* deadline patches before the first deadline."""
    return 2.0 + 1.5 * count / max(patches_per_second, 100.0)


# -- 4. cost ----------------------------------------------------------------------------


async def idle_cost(bench: Bench, seconds: float) -> dict[str, ProcessCost]:
    """CPU and memory while nothing happens but the operator's own timers and watches."""
    async with bench.meter() as meter:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            bench.progress.update(elapsed / seconds)
            await asyncio.sleep(min(0.5, seconds - elapsed))
    return meter.result


def lag_summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of *values* (seconds), in milliseconds, for the JSON report."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }
