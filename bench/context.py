"""What every measurement shares: the clients, the operator under test, the processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.cost import CostMeter
from harness.kube import ApiServer, prometheus_samples
from harness.operator_process import OperatorProcess
from harness.progress import Progress

WRITER_LEASE = {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}
"""Sessions whose every heartbeat writes: interval 1 s, a lease that outlives the run."""
IDLER_LEASE = {"ttlSeconds": 10800, "heartbeatIntervalSeconds": 3600}
"""Sessions beaten again inside their interval: the longest interval the CRD allows."""
SETUP_CONCURRENCY = 32
"""Concurrent requests of the benchmark's own setup work (creates, patches, warm-ups)."""


async def metric_by_label(
    http: aiohttp.ClientSession, base_url: str, metric: str, label: str
) -> dict[str, float]:
    """A metric of the operator at *base_url* (its ``/metrics``), summed by *label*."""
    async with http.get(base_url + "/metrics") as response:
        text = await response.text()
    values: dict[str, float] = {}
    for labels, value in prometheus_samples(text, metric):
        key = labels.get(label, "")
        values[key] = values.get(key, 0.0) + value
    return values


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
    """Processes metered besides the operator (apiserver, etcd, the benchmark itself)."""
    token: str
    progress: Progress
    cleanup_wait: float = 1.0
    """Seconds to let follow-up writes (labels, Events) land before the counters are read."""
    standby: OperatorProcess | None = None
    """A second replica, not the leader, while one runs (metered as ``standby``)."""

    async def operator_counters(self, metric: str, label: str) -> dict[str, float]:
        """A metric of the operator's ``/metrics``, summed by the value of *label*."""
        return await metric_by_label(self.http, self.operator.url, metric, label)

    async def ready_sessions(self) -> int:
        """How many sessions the operator holds as ``ready``."""
        states = await self.operator_counters("xg2g_sessions", "state")
        return int(states.get("ready", 0))

    def meter(self) -> CostMeter:
        """A cost meter over the operator (and a standby) while they run, apiserver, etcd and
        the benchmark."""
        pids = dict(self.pids)
        if self.operator.alive():
            pids["operator"] = self.operator.pid
        if self.standby is not None and self.standby.alive():
            pids["standby"] = self.standby.pid
        return CostMeter(pids)

    def heartbeat_sender(self) -> Callable[[SessionName], Any]:
        """A function that sends one heartbeat and returns the HTTP status (0: no answer)."""
        headers = {"Authorization": f"Bearer {self.token}"}

        async def beat(ref: SessionName) -> int:
            path = f"/api/v3/namespaces/{ref.namespace}/sessions/{ref.name}/heartbeat"
            try:
                async with self.http.post(self.operator.url + path, headers=headers) as response:
                    await response.read()
                    return response.status
            except (aiohttp.ClientError, TimeoutError):
                return 0

        return beat
