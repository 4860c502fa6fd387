"""Every Prometheus metric of the operator and the heartbeat API (docs/API_CONTRACT.md, Metrics)."""

from __future__ import annotations

from collections import Counter as StateCounts
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from session_operator.lease import SessionState

REGISTRY = CollectorRegistry(auto_describe=True)

LEASE_EXPIRED = Counter(
    "xg2g_sessions_lease_expired_total",
    "Sessions stopped because their lease ran out, by the state they were in.",
    ["previous_state"],
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
