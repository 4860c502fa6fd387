"""Two operator replicas in the chart's layout: each serves heartbeats over TLS, and its
probes on a port of their own; one leads (the Lease holder)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp

from bench.context import metric_by_label
from bench.field.clients import Replica
from harness.cluster import free_port
from harness.kube import ApiServer
from harness.operator_process import OperatorProcess

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/default/leases/session-lease-operator"
REPLICA_NAMES = ("replica-a", "replica-b")
START_TIMEOUT = "24h"
"""The replicas' ``startTimeout``: no node runs here, so every workload Pod stays Pending,
and the default 10 min would fail the Sessions of a step whose setting-up and window take
longer (as a step past the apiserver's capacity does)."""


class FieldReplica:
    """One replica: its process, named by ``POD_NAME`` as in a Pod, serving heartbeats and
    ``/metrics`` over TLS on its API port and probes on a plain port of their own."""

    def __init__(
        self,
        name: str,
        kubeconfig: Path,
        workdir: Path,
        certificate: tuple[Path, Path],
        tls: ssl.SSLContext,
        env: Mapping[str, str],
    ) -> None:
        self.name = name
        self.probe_port = free_port()
        cert_file, key_file = certificate
        self.process = OperatorProcess(
            kubeconfig,
            workdir / f"{name}.log",
            {
                **env,
                "POD_NAME": name,
                "XG2G_SESSION_TLS_CERT_FILE": str(cert_file),
                "XG2G_SESSION_TLS_KEY_FILE": str(key_file),
                "XG2G_SESSION_PROBE_PORT": str(self.probe_port),
                "XG2G_SESSION_START_TIMEOUT": START_TIMEOUT,
            },
            tls=tls,
            log_level="WARNING",
        )

    @property
    def endpoint(self) -> Replica:
        """The replica as the clients' Service sees it."""
        return Replica(self.name, self.process.url, f"http://127.0.0.1:{self.probe_port}")

    async def metric(self, http: aiohttp.ClientSession, name: str, label: str) -> dict[str, float]:
        """A metric of the replica's ``/metrics``, summed by the value of *label* (*http*
        must trust the API's certificate)."""
        return await metric_by_label(http, self.process.url, name, label)

    async def wait_ready(
        self, http: aiohttp.ClientSession, within: float = 120.0, since: float | None = None
    ) -> float:
        """Wait until ``/readyz`` answers 200 (the store synced); the seconds since *since*
        (a monotonic instant, by default the call's)."""
        started = time.monotonic() if since is None else since
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.process.log_tail()}")
            try:
                async with http.get(f"{self.endpoint.probe_url}/readyz") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {within:.0f}s:\n{self.process.log_tail()}")


class ReplicaSet:
    """The two replicas."""

    def __init__(self, replicas: list[FieldReplica]) -> None:
        self.replicas = replicas

    def __iter__(self) -> Iterator[FieldReplica]:
        return iter(self.replicas)

    def pids(self) -> dict[str, int]:
        """The live replicas' process ids, by name."""
        return {r.name: r.process.pid for r in self.replicas if r.process.alive()}

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start every replica and wait until each is ready."""
        for replica in self.replicas:
            replica.process.spawn()
        for replica in self.replicas:
            await replica.wait_ready(http)

    def stop(self) -> None:
        """Stop every replica."""
        for replica in self.replicas:
            replica.process.stop()

    def named(self, name: str) -> FieldReplica:
        """The replica called *name*."""
        return next(replica for replica in self.replicas if replica.name == name)

    async def leader(self, api: ApiServer) -> str | None:
        """The name of the replica holding the Lease, ``None`` while none does."""
        status, lease = await api.call("GET", LEASE_PATH)
        if status != 200:
            return None
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        for replica in self.replicas:
            if holder.startswith(f"{replica.name}_") and replica.process.alive():
                return replica.name
        return None

    async def wait_leader(self, api: ApiServer, within: float = 60.0) -> str:
        """Wait until a live replica holds the Lease; its name."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (name := await self.leader(api)) is not None:
                return name
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no replica leads after {within:.0f}s")
