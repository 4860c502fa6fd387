"""The measurements of docs/benchmarks.md, each a function over a running control plane
and operator.

1. :data:`RAW`, the raw ceiling: status merge-PATCHes straight to the apiserver (admin
   token); :data:`WRITE_VARIANTS`, the heartbeat's write made by other means.
2. :func:`heartbeats`: heartbeats through the operator's HTTP API, that must write
   (interval 1 s, each session beaten at most once per interval) or fall inside the
   interval (pre-beaten sessions with a long interval); :func:`duplicate_heartbeats`:
   concurrent copies of one first beat.
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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.context import IDLER_LEASE, SETUP_CONCURRENCY, Bench, SessionName
from bench.cost import ProcessCost
from bench.load import Latency, LoadResult, Rotation, bounded_gather, closed_loop, percentile
from bench.population import wait_quiet
from harness.kube import ApiCalls, ApiServer, WatchExpired
from session_operator.api.heartbeat import heartbeat_patch
from session_operator.k8s.rest import JSON_PATCH, MERGE_PATCH
from session_operator.lease import HeartbeatExtend
from session_operator.models import sessions_path
from session_operator.timestamps import format_timestamp, parse_timestamp

STOPPED = ("stopping", "stopped", "failed")
WRITER_GAP = 1.05
"""Seconds between the answer to a writer's beat and its next beat (interval + margin)."""
WARM_UP_TRIES = 10
WARM_UP_RETRY_SECONDS = 1.0


@dataclass
class Measurement:
    """One closed-loop run: its load figures, what the apiserver served, what it cost."""

    label: str
    live: int
    targets: int
    """How many distinct Sessions the run sent to."""
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

    def cpu_ms_per_op(self, process: str) -> float:
        """Milliseconds of *process*'s CPU per 2xx answer (NaN if it was not metered)."""
        cost = self.cost.get(process)
        if cost is None or not self.load.ok:
            return math.nan
        return 1000 * cost.cpu_seconds / self.load.ok


async def _heartbeat_results(bench: Bench) -> dict[str, float]:
    if not bench.operator.alive():
        return {}
    return await bench.operator_counters("xg2g_sessions_heartbeat_total", "result")


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    deltas = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: delta for key, delta in deltas.items() if delta > 0}


async def _measure(
    bench: Bench,
    label: str,
    live: int,
    rotation: Rotation[SessionName],
    send: Callable[[SessionName], Any],
    concurrency: int,
    duration: float,
) -> Measurement:
    targets = len(rotation)
    results_before = await _heartbeat_results(bench)
    before = await bench.api.request_counts()
    gated = rotation.gated_seconds
    async with bench.meter() as meter:
        load = await closed_loop(rotation, send, concurrency, duration, bench.progress.update)
    load.gated_seconds = rotation.gated_seconds - gated
    await asyncio.sleep(bench.cleanup_wait)
    after = await bench.api.request_counts()
    results = _delta(await _heartbeat_results(bench), results_before)
    return Measurement(label, live, targets, load, after.since(before), meter.result, results)


# -- 1. raw ceiling and the cost of a heartbeat's write --------------------------------


class StatusWriter:
    """Writes what a heartbeat writes (``lastHeartbeat`` and ``leaseExpiresAt``) straight to
    the apiserver as the admin, and remembers what it wrote to each Session.

    :meth:`merge` is the raw ceiling's write: an unconditional merge patch. :meth:`guarded`
    is the heartbeat's own compare-and-set JSON patch (:func:`heartbeat_patch`: ``test``
    operations on what this writer wrote last, then ``add`` and ``replace``), so the two
    differ in the patch type alone. Every target is a ready Session.
    """

    def __init__(self, api: ApiServer) -> None:
        self._api = api
        self._ttl = timedelta(seconds=IDLER_LEASE["ttlSeconds"])
        self._written: dict[SessionName, dict[str, str]] = {}

    def _next(self) -> dict[str, str]:
        now = datetime.now(UTC)
        return {
            "state": "ready",
            "lastHeartbeat": format_timestamp(now),
            "leaseExpiresAt": format_timestamp(now + self._ttl),
        }

    async def _send(self, ref: SessionName, status: dict[str, str], body: object, kind: str) -> int:
        path = sessions_path(ref.namespace, ref.name, "status")
        try:
            answer = await self._api.send("PATCH", path, body, kind)
        except (aiohttp.ClientError, TimeoutError):
            return 0
        if answer == 200:
            self._written[ref] = status
        return answer

    async def merge(self, ref: SessionName) -> int:
        """An unconditional status merge patch; returns the HTTP status (0: no answer)."""
        status = self._next()
        body = {"status": {key: status[key] for key in ("lastHeartbeat", "leaseExpiresAt")}}
        return await self._send(ref, status, body, MERGE_PATCH)

    async def guarded(self, ref: SessionName) -> int:
        """The heartbeat's JSON patch, tested against what :meth:`merge` or this wrote last."""
        status = self._next()
        extend = HeartbeatExtend(
            last_heartbeat=parse_timestamp(status["lastHeartbeat"]),
            expires_at=parse_timestamp(status["leaseExpiresAt"]),
        )
        body = heartbeat_patch(self._written[ref], extend)
        return await self._send(ref, status, body, JSON_PATCH)

    async def prime(self, targets: Sequence[SessionName]) -> None:
        """Merge-patch every target not written yet, so :meth:`guarded` knows what to test."""
        missing = [ref for ref in targets if ref not in self._written]
        await bounded_gather(missing, self.merge, SETUP_CONCURRENCY)


@dataclass(frozen=True)
class WriteVariant:
    """One way of writing a heartbeat's fields, measured to split a heartbeat's apiserver
    cost into its parts: the patch type, and the operator's watch of the namespace."""

    label: str
    description: str
    guarded: bool
    watched: bool


RAW = WriteVariant("raw", "status merge-PATCH, unwatched namespace", guarded=False, watched=False)
"""The raw ceiling: what a heartbeat writes, as an unconditional merge patch, to Sessions
nothing reacts to (never two at once on one Session)."""

WRITE_VARIANTS = (
    WriteVariant("guarded-unwatched", "the heartbeat's JSON patch, unwatched namespace",
                 guarded=True, watched=False),
    WriteVariant("merge-watched", "status merge-PATCH, the operator's namespace",
                 guarded=False, watched=True),
    WriteVariant("guarded-watched", "the heartbeat's JSON patch, the operator's namespace",
                 guarded=True, watched=True),
)  # fmt: skip


async def write_variant(
    bench: Bench,
    variant: WriteVariant,
    live: int,
    targets: Rotation[SessionName],
    concurrency: int,
    duration: float,
    writer: StatusWriter,
) -> Measurement:
    """Write to *targets* as *variant* says (its targets must match its ``watched``)."""
    send = writer.guarded if variant.guarded else writer.merge
    return await _measure(bench, variant.label, live, targets, send, concurrency, duration)


# -- 2. heartbeats ----------------------------------------------------------------------


async def warm_up(bench: Bench, targets: Sequence[SessionName]) -> None:
    """Beat every target once, as clients that are already running would have: the API's
    caches (session view, TokenReview, SubjectAccessReview) then hold them."""
    beat = bench.heartbeat_sender()

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
    send = bench.heartbeat_sender()
    return await _measure(bench, label, live, targets, send, concurrency, duration)


@dataclass
class Duplicates:
    """Concurrent copies of each session's first heartbeat: what the apiserver saw."""

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
    """Send *copies* heartbeats at once to each of *sessions*, never beaten before and with
    a 3600 s interval: the first to arrive writes, every other one is a duplicate inside
    the interval and must not write."""
    beat = bench.heartbeat_sender()
    statuses: dict[int, int] = {}
    durations: list[float] = []
    results_before = await _heartbeat_results(bench)
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
    results = _delta(await _heartbeat_results(bench), results_before)
    return Duplicates(
        live, len(sessions), copies, statuses, Latency.of(durations), after.since(before), results
    )


# -- 3. expiry --------------------------------------------------------------------------


Background = Callable[[asyncio.Event], Coroutine[Any, Any, LoadResult]]
"""A load run beside an expiry until the event is set."""


def heartbeat_load(
    bench: Bench, targets: Rotation[SessionName], concurrency: int, longest: float
) -> Background:
    """Heartbeats through the API to *targets*, for at most *longest* seconds."""
    send = bench.heartbeat_sender()

    async def run(stop: asyncio.Event) -> LoadResult:
        return await closed_loop(targets, send, concurrency, longest, stop=stop)

    return run


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
    watch_trouble: str = ""
    """Empty, or what went wrong with the watch (a relist, an error)."""
    watch_events: dict[str, int] = field(default_factory=dict)
    graced: int = 0
    """Sessions whose lease the operator moved on instead of stopping them (outage grace)."""
    background: LoadResult | None = None
    """Must-write heartbeats sent while the leases ended (``None``: none were)."""

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
    def expiry_writes(self) -> int:
        """Successful writes the expiries caused: all writes but the background
        heartbeats' (one status write each)."""
        return self.calls.writes - (self.background.ok if self.background else 0)

    @property
    def writes_per_expiry(self) -> float:
        """Successful writes (status, metadata, Event) per stop seen."""
        return self.expiry_writes / self.observed if self.observed else math.nan


@dataclass
class ExpiryWatch:
    """What the watch saw of the Sessions under test."""

    deadlines: dict[str, datetime]
    written: dict[str, str] = field(default_factory=dict)
    """The ``leaseExpiresAt`` the benchmark wrote, by name."""
    graced: set[str] = field(default_factory=set)
    stopped: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metadata_writes: dict[str, int] = field(default_factory=dict)
    all_stopped: asyncio.Event = field(default_factory=asyncio.Event)
    trouble: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    """Watch events received, by type."""

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
        expires = status.get("leaseExpiresAt")
        if name not in self.stopped and expires and expires != self.written[name]:
            # Moved on by the operator, not stopped: a grace for an outage it saw (rule 8).
            self.graced.add(name)
        if name not in self.stopped and status.get("state") in STOPPED:
            self.stopped[name] = (when, status)
            if len(self.stopped) == len(self.deadlines):
                self.all_stopped.set()

    def _count(self, kind: str) -> None:
        self.metadata_writes[kind] = self.metadata_writes.get(kind, 0) + 1


async def follow_sessions(bench: Bench, namespace: str, version: str, seen: ExpiryWatch) -> None:
    """Feed *seen* from a watch of *namespace*; relist if the watch cannot resume."""
    while True:
        try:
            async for when, event in bench.api.watch(namespace, version):
                kind = str(event.get("type"))
                seen.events[kind] = seen.events.get(kind, 0) + 1
                if kind in ("ADDED", "MODIFIED"):
                    seen.take(when, event.get("object") or {})
                    bench.progress.update(len(seen.stopped) / len(seen.deadlines))
                elif kind == "ERROR" and len(seen.trouble) < 3:
                    seen.trouble.append(f"watch error: {event.get('object')}")
            return
        except WatchExpired as expired:
            seen.trouble.append(f"relisted after {expired}")
            listing = await bench.api.expect("GET", sessions_path(namespace))
            when = time.time()
            for item in listing.get("items", []):
                seen.take(when, item)
            version = str(listing["metadata"]["resourceVersion"])


async def expiry(
    bench: Bench,
    label: str,
    live: int,
    namespace: str,
    deadlines: dict[str, datetime],
    grace: float,
    background: Background | None = None,
) -> Expiry:
    """Set ``leaseExpiresAt`` of each Session of *namespace* named in *deadlines* by status
    patch, then watch until every one is seen stopped (or *grace* seconds past the last
    deadline) and the writes that follow a stop have landed. The counters bracket the
    expiries only, not the benchmark's own patches.

    With *background*, that load runs from the end of the patches until every stop is
    seen: the expiries then compete with it for the operator and the apiserver."""
    seen = ExpiryWatch(deadlines, {name: format_timestamp(at) for name, at in deadlines.items()})
    watcher = asyncio.create_task(
        follow_sessions(bench, namespace, await bench.api.resource_version(namespace), seen)
    )
    late = 0

    async def patch(name: str) -> None:
        nonlocal late
        body = {"status": {"leaseExpiresAt": seen.written[name]}}
        await bench.api.expect("PATCH", sessions_path(namespace, name, "status"), body, MERGE_PATCH)
        if datetime.now(UTC) >= deadlines[name]:
            late += 1

    try:
        await bounded_gather(sorted(deadlines, key=deadlines.__getitem__), patch, SETUP_CONCURRENCY)
        before = await bench.api.request_counts()
        last_deadline = max(deadlines.values()).timestamp()
        loaded: LoadResult | None = None
        async with bench.meter() as meter:
            timeout = max(0.0, last_deadline - time.time()) + grace
            stop = asyncio.Event()
            load: asyncio.Task[LoadResult] | None = None
            if background is not None:
                load = asyncio.create_task(background(stop))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.all_stopped.wait(), timeout)
            stop.set()
            loaded = None if load is None else await load
            with contextlib.suppress(TimeoutError):
                await wait_quiet(bench, time.monotonic() + grace)
        after = await bench.api.request_counts()
    finally:
        if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
            seen.trouble.append(f"watch failed: {watcher.exception()!r}")
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
        watch_trouble="; ".join(seen.trouble),
        watch_events=seen.events,
        graced=len(seen.graced),
        background=loaded,
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


@dataclass(frozen=True)
class Idle:
    """The cost of *live* sessions at rest, while *lapsing* of their leases fall due (as a
    real cluster's do), and what a standby replica's start cost before it was ready."""

    live: int
    lapsing: int
    cost: dict[str, ProcessCost]
    standby_start: ProcessCost
    """The standby from its start to ready: its first LIST and the watch's sync."""


async def set_deadlines(bench: Bench, namespace: str, deadlines: dict[str, datetime]) -> None:
    """Shorten the named Sessions' leases to *deadlines* by status merge patch, earliest
    first."""

    async def patch(name: str) -> None:
        body = {"status": {"leaseExpiresAt": format_timestamp(deadlines[name])}}
        await bench.api.expect("PATCH", sessions_path(namespace, name, "status"), body, MERGE_PATCH)

    await bounded_gather(sorted(deadlines, key=deadlines.__getitem__), patch, SETUP_CONCURRENCY)


async def idle_cost(bench: Bench, seconds: float) -> dict[str, ProcessCost]:
    """CPU and memory while nothing happens but the operator's own timers and watches (and
    the expiries of leases set to fall due in the window)."""
    async with bench.meter() as meter:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            bench.progress.update(elapsed / seconds)
            await asyncio.sleep(min(0.5, seconds - elapsed))
    return meter.result


def lag_summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and min of *values* (seconds), in milliseconds, for the JSON report."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }
