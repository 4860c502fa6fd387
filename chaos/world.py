"""Everything a fault or a soak runs against: the local control plane, two operator replicas
behind one Service-like port, and the clients' process.

The replicas elect a leader through the Lease as in a cluster; a killed replica is started
again as a new incarnation (``chaos-a-2``), as its Deployment would, and each incarnation
posts its Events under its own ``reportingInstance``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from chaos.service import ServiceProxy
from harness import LocalControlPlane, ensure_built, toolchain
from harness.cluster import free_port
from harness.kube import ApiServer, prometheus_samples
from harness.operator_process import OperatorProcess
from session_operator.config import DEFAULT_TOKEN_AUDIENCE
from session_operator.runtime import LEADER_LEASE_NAME
from session_operator.timestamps import parse_timestamp

REPO = Path(__file__).resolve().parents[1]
LEASE_NAMESPACE = "default"
CLIENTS_NAMESPACE = "chaos-clients"
CLIENT_ACCOUNT = "chaos-client"
EXPIRED_COUNTER = "xg2g_sessions_lease_expired_total"


@dataclass(frozen=True)
class OperatorSettings:
    """How the replicas are configured for a run."""

    stop_timeout: float = 20.0
    retention: str = "24h"
    expiry_check_interval: str = "10s"

    def environment(self, instance: str) -> dict[str, str]:
        """The environment of one replica incarnation."""
        return {
            "POD_NAME": instance,
            "XG2G_SESSION_STOP_TIMEOUT": f"{self.stop_timeout:g}s",
            "XG2G_SESSION_RETENTION": self.retention,
            "XG2G_SESSION_EXPIRY_CHECK_INTERVAL": self.expiry_check_interval,
            "XG2G_SESSION_LEADER_ELECTION_NAMESPACE": LEASE_NAMESPACE,
        }


@dataclass
class Replica:
    """One replica slot (a Pod of the Deployment): a fixed port, successive incarnations."""

    slot: str
    port: int
    settings: OperatorSettings
    kubeconfig: Path
    logs: Path
    incarnation: int = 0
    process: OperatorProcess | None = None
    killed: list[str] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """The current incarnation's name (its Pod name, its Events' reportingInstance)."""
        return f"chaos-{self.slot}-{self.incarnation}"

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start a new incarnation and wait until it is ready."""
        self.incarnation += 1
        self.process = OperatorProcess(
            self.kubeconfig,
            self.logs / f"{self.instance}.log",
            self.settings.environment(self.instance),
            port=self.port,
        )
        self.process.spawn()
        await self.process.wait_ready(http)

    def kill(self) -> None:
        """SIGKILL the current incarnation: no clean shutdown, the Lease is not released."""
        assert self.process is not None
        self.process.kill()
        self.killed.append(self.instance)

    def rss_bytes(self) -> int | None:
        """Resident memory of the current incarnation, from ``/proc``."""
        if self.process is None or not self.process.alive():
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    async def expired_counter(self, http: aiohttp.ClientSession) -> float | None:
        """This incarnation's ``xg2g_sessions_lease_expired_total``, all labels summed."""
        if self.process is None or not self.process.alive():
            return None
        async with http.get(self.process.url + "/metrics") as response:
            text = await response.text()
        return sum(value for _, value in prometheus_samples(text, EXPIRED_COUNTER))


class ClientsProcess:
    """``python -m chaos.clients``: commands in, facts out (see :mod:`chaos.clients`)."""

    def __init__(self, url: str, token_file: Path, log_path: Path) -> None:
        self._argv = [sys.executable, "-m", "chaos.clients", "--url", url]
        self._argv += ["--token-file", str(token_file)]
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.facts: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Start the process and read its facts in the background."""
        with self._log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.create_task(self._read())

    async def send(self, op: str, **arguments: Any) -> None:
        """Send one command."""
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await self._process.stdin.drain()

    async def fact(self, event: str, session: str) -> dict[str, Any]:
        """Wait for the first fact *event* about *session*."""
        while True:
            for fact in self.facts:
                if fact["event"] == event and fact["session"] == session:
                    return fact
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Ask the process to quit; kill it if it does not."""
        if self._process is None or self._process.returncode is not None:
            return
        await self.send("quit")
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            self.facts.append(json.loads(line))


class World:
    """The control plane, the replicas, the Service stand-in, the clients; started together."""

    def __init__(self, workdir: Path, settings: OperatorSettings, replicas: int = 2) -> None:
        self.workdir = workdir
        self.settings = settings
        self.control_plane = LocalControlPlane(
            ensure_built(toolchain(repo_root=REPO)), workdir=workdir / "control-plane"
        )
        self._replica_count = replicas
        self.replicas: list[Replica] = []
        self.proxy: ServiceProxy | None = None
        self._clients: ClientsProcess | None = None
        self.token = ""
        self._api: ApiServer | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> World:
        self.control_plane.start()  # in the main thread: it installs a SIGTERM handler
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._clients is not None:
            await self._clients.stop()
        for replica in self.replicas:
            if replica.process is not None:
                await asyncio.to_thread(replica.process.stop)
        if self.proxy is not None:
            await self.proxy.close()
        if self._api is not None:
            await self._api.__aexit__(None, None, None)
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(self.control_plane.stop)

    @property
    def api(self) -> ApiServer:
        """The harness's admin client of the apiserver."""
        assert self._api is not None
        return self._api

    @property
    def http(self) -> aiohttp.ClientSession:
        """A plain HTTP client (replicas' metrics, heartbeats through the proxy)."""
        assert self._http is not None
        return self._http

    @property
    def clients(self) -> ClientsProcess:
        """The clients' process."""
        assert self._clients is not None
        return self._clients

    @property
    def service_url(self) -> str:
        """The heartbeat API's URL as clients reach it."""
        assert self.proxy is not None
        return self.proxy.url

    async def leader(self) -> tuple[Replica | None, float | None]:
        """The replica whose incarnation holds the leader Lease, and the Lease's renewTime."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/"
        status, lease = await self.api.call("GET", path + LEADER_LEASE_NAME)
        if status != 200:
            return None, None
        spec = lease.get("spec", {})
        holder = str(spec.get("holderIdentity") or "")
        renewed = spec.get("renewTime")
        renewed_at = parse_timestamp(renewed).timestamp() if renewed else None
        for replica in self.replicas:
            alive = replica.process is not None and replica.process.alive()
            if alive and holder.startswith(replica.instance + "_"):
                return replica, renewed_at
        return None, renewed_at

    async def kubectl(self, *args: str, input_text: str | None = None) -> str:
        """Run kubectl against the control plane (in a thread); its stdout."""
        kubectl = self.control_plane.kubectl
        result = await asyncio.to_thread(kubectl, *args, input_text=input_text)
        return result.stdout

    async def _start(self) -> None:
        control_plane = self.control_plane
        self._api = await ApiServer(
            control_plane.server, control_plane.admin_token, control_plane.ca_file
        ).__aenter__()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        await self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/sessions.xg2g.io"
        )
        await self._client_identity()
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for slot in "ab"[: self._replica_count]:
            replica = Replica(slot, free_port(), self.settings, control_plane.kubeconfig, logs)
            self.replicas.append(replica)
            await replica.start(self.http)
        self.proxy = ServiceProxy([replica.port for replica in self.replicas])
        await self.proxy.start()
        token_file = self.workdir / "client.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        self._clients = ClientsProcess(self.proxy.url, token_file, logs / "clients.log")
        await self._clients.start()
        await self._wait_for_leader()

    async def _client_identity(self) -> None:
        """A ServiceAccount allowed to beat every session (the chart's ClusterRole), and
        a token of it for the clients."""
        await self.kubectl(
            "apply", "-f", str(REPO / "manifests" / "session-heartbeat-clusterrole.yaml")
        )
        await self.kubectl("create", "namespace", CLIENTS_NAMESPACE)
        await self.kubectl("create", "serviceaccount", CLIENT_ACCOUNT, "-n", CLIENTS_NAMESPACE)
        await self.kubectl(
            "create", "clusterrolebinding", CLIENT_ACCOUNT, "--clusterrole=session-heartbeat",
            f"--serviceaccount={CLIENTS_NAMESPACE}:{CLIENT_ACCOUNT}",
        )  # fmt: skip
        token = await self.kubectl(
            "create", "token", CLIENT_ACCOUNT, "-n", CLIENTS_NAMESPACE, "--duration=24h",
            f"--audience={DEFAULT_TOKEN_AUDIENCE}",
        )  # fmt: skip
        self.token = token.strip()

    async def _wait_for_leader(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            leader, _ = await self.leader()
            if leader is not None:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"no replica took the leader Lease within {within:.0f}s")
