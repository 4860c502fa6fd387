"""Every Prometheus metric of the operator and the heartbeat API (docs/API_CONTRACT.md, Metrics;
the runtime's in docs/architecture.md, Metrics).

The runtime's follow client-go's names: the work queue's (``workqueue_*{name}``), the
leader elector's (``leader_election_master_status{name}``), with controller-runtime's
``reconcile_errors_total``. What changes once per watch event or per reconcile is kept as
plain numbers and read at scrape time: that path takes no lock.
"""

from __future__ import annotations

import bisect
from collections import Counter as StateCounts
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from session_operator.lease import SessionState

REGISTRY = CollectorRegistry(auto_describe=True)

LEASE_EXPIRED = Counter(
    "xg2g_sessions_lease_expired_total",
    "Sessions stopped because their lease ran out, by the state they were in.",
    ["previous_state"],
    registry=REGISTRY,
)
STOPS = Counter(
    "xg2g_sessions_stopped_total",
    "Live sessions stopped, by stopReason and by the reason their conditions give"
    " (LeaseExpired, MaxLifetimeReached, StartTimeout, UserStopped, Failed, Cleanup).",
    ["stop_reason", "reason"],
    registry=REGISTRY,
)
HOLDS = Counter(
    "xg2g_session_holds_total",
    "Holds of live sessions by change: set (spec.hold.until taken up), ended (ran out, or"
    " void when taken up), cleared (spec.hold removed).",
    ["change"],
    registry=REGISTRY,
)
EXPIRY_LAG = Histogram(
    "xg2g_session_expiry_lag_seconds",
    "Time from leaseExpiresAt to the write that stopped the session.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
HEARTBEATS = Counter(
    "xg2g_sessions_heartbeat_total",
    "Heartbeat requests by result.",
    ["result"],
    registry=REGISTRY,
)
HEARTBEAT_DURATION = Histogram(
    "xg2g_session_heartbeat_duration_seconds",
    "Time to handle one heartbeat request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)


class SessionsByState(Collector):
    """``xg2g_sessions{state}``: counted from the operator's store at scrape time."""

    def __init__(self, counts: Callable[[], StateCounts[str]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per state, zeros included, so dashboards see every series."""
        family = GaugeMetricFamily("xg2g_sessions", "Sessions by state.", labels=["state"])
        counts = self._counts()
        for state in SessionState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family


def register_session_gauge(counts: Callable[[], StateCounts[str]]) -> None:
    """Serve ``xg2g_sessions{state}`` from *counts* (one operator per process)."""
    REGISTRY.register(SessionsByState(counts))


class SessionsExpiringSoon(Collector):
    """``xg2g_sessions_expiring_soon``: counted by the operator's store, read at scrape time."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample: the live sessions in their expiry warning window."""
        yield GaugeMetricFamily(
            "xg2g_sessions_expiring_soon",
            "Live sessions whose lease is in its expiry warning window (LeaseValid reason"
            " ExpiringSoon): expiryWarning or less before leaseExpiresAt.",
            value=self._count(),
        )


def register_expiring_soon_gauge(count: Callable[[], int]) -> None:
    """Serve ``xg2g_sessions_expiring_soon`` from *count* (one operator per process)."""
    REGISTRY.register(SessionsExpiringSoon(count))


LEADER = Gauge(
    "xg2g_leader_election_master_status",
    "1 while this replica holds the leader Lease (and takes lifecycle steps), else 0.",
    ["name"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "xg2g_reconcile_errors_total",
    "Reconciles that failed and were queued again with backoff.",
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "xg2g_watch_restarts_total",
    "Times the list-watch started again: after the server ended a watch, 410 Gone, or a failure.",
    ["resource"],
    registry=REGISTRY,
)
WATCH_LAST_EVENT = Gauge(
    "xg2g_watch_last_event_timestamp_seconds",
    "Unix time of the last watch event or listing (bookmarks included; 0 before the first); "
    "its age is time() minus this.",
    ["resource"],
    registry=REGISTRY,
)


def register_leader_gauge(leading: Callable[[], bool], lease_name: str) -> None:
    """Serve ``xg2g_leader_election_master_status{name}`` (*lease_name*) from *leading*,
    read at scrape time."""
    LEADER.labels(name=lease_name).set_function(lambda: float(leading()))


QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, from a key taken at once to one behind a reconcile whose calls time out (30 s)."""


class Durations:
    """A histogram as plain numbers, for one event loop to write and its scrape to read."""

    def __init__(self, bounds: Sequence[float] = QUEUE_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets_and_sum(self) -> tuple[list[tuple[str, float]], float]:
        """Prometheus' buckets (how many were at most each bound, then ``+Inf``: all) and
        the sum of the durations."""
        total = 0
        buckets = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets, self.sum


@dataclass
class QueueStats:
    """One work queue's numbers, as client-go's workqueue exports them: keys waiting
    (``depth``), keys queued (``adds``), keys queued again after a failure (``retries``),
    and the time keys wait and are worked on."""

    depth: int = 0
    adds: int = 0
    retries: int = 0
    queue_duration: Durations = field(default_factory=Durations)
    work_duration: Durations = field(default_factory=Durations)


class WorkQueues(Collector):
    """``xg2g_workqueue_*{name}``: the numbers of every work queue, by its name."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueStats] = {}

    def stats(self, name: str) -> QueueStats:
        """The numbers of the queue(s) named *name*; queues of one name share them."""
        return self._queues.setdefault(name, QueueStats())

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        """The five families, one sample (or histogram) per queue."""
        depth = GaugeMetricFamily(
            "xg2g_workqueue_depth", "Keys waiting in the work queue.", labels=["name"]
        )
        adds = CounterMetricFamily(
            "xg2g_workqueue_adds", "Keys queued (a key already waiting is not).", labels=["name"]
        )
        retries = CounterMetricFamily(
            "xg2g_workqueue_retries",
            "Keys queued again, with backoff, after a failure.",
            labels=["name"],
        )
        waited = HistogramMetricFamily(
            "xg2g_workqueue_queue_duration_seconds",
            "Time a key waited in the queue before a worker took it.",
            labels=["name"],
        )
        worked = HistogramMetricFamily(
            "xg2g_workqueue_work_duration_seconds",
            "Time a worker took over one key.",
            labels=["name"],
        )
        for name, stats in self._queues.items():
            depth.add_metric([name], stats.depth)
            adds.add_metric([name], stats.adds)
            retries.add_metric([name], stats.retries)
            waited.add_metric([name], *stats.queue_duration.buckets_and_sum())
            worked.add_metric([name], *stats.work_duration.buckets_and_sum())
        yield from (depth, adds, retries, waited, worked)


WORKQUEUES = WorkQueues()
REGISTRY.register(WORKQUEUES)
