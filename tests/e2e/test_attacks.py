"""Attacks on a replica by a caller inside the cluster, each tried against the real operator
(``run``, over TLS, with the chart's layout of listeners) on a control plane of its own,
and the defence that holds. docs/security.md lists them with what each cost the attacker.

The attacker calls from loopback addresses of its own (127.0.0.2 and up), as Pods would
from theirs; the real client, the kubelet's probes and the apiserver from others.
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from harness.operator_process import OperatorProcess
from session_operator.api.admission import BODY_DEADLINE_SECONDS, max_review_bytes
from session_operator.api.connections import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE
from tests.e2e.conftest import REPO, Cluster, fresh_namespace, wait_for
from tests.e2e.heartbeats import heartbeat_path, service_account
from tests.e2e.sessions import create_session, read_session, wait_for_state
from tests.e2e.webhooks import register_size_webhook

MAX_BYTES = 16 * 1024
WEBHOOK = "session-size-attacks"
RSS_BOUND_MIB = 200
"""Under the chart's 256 Mi limit, with room for the Python heap's own growth."""


@dataclass(frozen=True)
class Target:
    """The operator under attack and where it listens."""

    cluster: Cluster
    operator: OperatorProcess
    tls: ssl.SSLContext
    probe_port: int
    webhook_port: int

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}/admission/sessions"

    def rss_mib(self) -> float:
        """The operator's resident memory now."""
        status = Path(f"/proc/{self.operator.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def target(private_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The operator over TLS, with probes and webhook on ports of their own, registered as
    the cluster's Session size webhook (failurePolicy Fail)."""
    cluster = private_cluster
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sessions.xg2g.io")
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "session-heartbeat-clusterrole.yaml"))
    # Room for well over a thousand connections on both ends (the operator inherits it).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    directory = tmp_path_factory.mktemp("attacks")
    cert_file, key_file = self_signed_certificate(directory)
    tls = ssl.create_default_context(cafile=str(cert_file))
    probe_port, webhook_port = free_port(), free_port()
    operator = OperatorProcess(
        cluster.kubeconfig,
        directory / "operator.log",
        {
            "XG2G_SESSION_TLS_CERT_FILE": str(cert_file),
            "XG2G_SESSION_TLS_KEY_FILE": str(key_file),
            "XG2G_SESSION_PROBE_PORT": str(probe_port),
            "XG2G_SESSION_WEBHOOK_PORT": str(webhook_port),
            "XG2G_SESSION_MAX_SESSION_BYTES": str(MAX_BYTES),
            "XG2G_SESSION_AUTH_CACHE_TTL": "1s",
            # The eviction test holds 5 x 272 connections: more than this limit.
            "XG2G_SESSION_API_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "XG2G_SESSION_LEADER_ELECTION": "false",
            "XG2G_SESSION_EXPIRY_CHECK_INTERVAL": "1s",
        },
        tls=tls,
    )
    operator.start()
    found = Target(cluster, operator, tls, probe_port, webhook_port)
    _register_and_wait(cluster, found.webhook_url, cert_file)
    try:
        yield found
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, check=False)
        operator.stop()


def _register_and_wait(cluster: Cluster, url: str, ca_file: Path) -> None:
    """Register the size webhook at *url* and wait until the apiserver calls it."""
    register_size_webhook(cluster, WEBHOOK, url, ca_file)
    probe = session_body("default", "probe", MAX_BYTES)
    assert wait_for(
        lambda: (
            "session-size.xg2g.io"
            in cluster.kubectl(
                "create", "--dry-run=server", "-f", "-", input_text=json.dumps(probe), check=False
            ).stderr
        ),
        timeout=15,
    )


@pytest.fixture
def namespace(private_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace of the module's cluster for one test."""
    with fresh_namespace(private_cluster) as name:
        yield name


def session_body(namespace: str, name: str, size: int, lease: dict[str, int] | None = None) -> Any:
    """A Session with a Pod template, padded so that its JSON is about *size* bytes."""
    template: dict[str, Any] = {
        "metadata": {"annotations": {"padding": ""}},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
    }
    body = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": template, **({"lease": lease} if lease else {})},
    }
    padding = size - len(json.dumps(body, separators=(",", ":")))
    template["metadata"]["annotations"]["padding"] = "x" * max(0, padding)
    return body


def create_through_the_webhook(cluster: Cluster, namespace: str, name: str) -> bool:
    """Whether a small Session is admitted (the apiserver calls the webhook: Fail)."""
    body = session_body(namespace, name, 2048)
    created = cluster.kubectl("create", "-f", "-", input_text=json.dumps(body), check=False)
    return created.returncode == 0


@pytest.fixture
async def http(target: Target) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for one test (its own connections, from 127.0.0.1)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def beat_from(target: Target, source: str, path: str, token: str) -> int:
    """One heartbeat from the loopback address *source*, on a connection of its own."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=target.tls, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        headers = {"Authorization": f"Bearer {token}"}
        async with client.post(target.operator.url + path, headers=headers) as answer:
            return answer.status


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_tls(target: Target, port: int, source: str, count: int) -> list[Stream]:
    """*count* connections from *source* to *port*, TLS done, held open."""

    async def one() -> Stream:
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=target.tls, local_addr=(source, 0),
            server_hostname="127.0.0.1",
        )  # fmt: skip

    streams: list[Stream] = []
    for start in range(0, count, 64):
        batch = await asyncio.gather(
            *(one() for _ in range(min(64, count - start))), return_exceptions=True
        )
        streams += [stream for stream in batch if not isinstance(stream, BaseException)]
    return streams


def close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def first_line(reader: asyncio.StreamReader) -> bytes:
    """The status line the server sent before it closed (b"" when it said nothing)."""
    answer = await asyncio.wait_for(reader.read(), 5)
    return answer.split(b"\r\n", 1)[0]


async def test_connections_held_by_a_few_pods_lock_out_neither_clients_nor_probes_nor_the_webhook(
    target: Target, namespace: str, http: aiohttp.ClientSession
) -> None:
    cluster = target.cluster
    create_session(
        cluster, namespace, "kept", {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 5}}
    )
    wait_for_state(cluster, namespace, "kept", {"ready"}, timeout=10)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    sources = [f"127.0.0.{host}" for host in range(2, 7)]
    attempts = MAX_CONNECTIONS_PER_SOURCE + 16
    held: list[Stream] = []
    try:
        for source in sources:  # 5 x 272 attempts: more than the 1,024 a replica holds
            held += await open_tls(target, target.operator.port, source, attempts)
        assert len(sources) * MAX_CONNECTIONS_PER_SOURCE > MAX_CONNECTIONS
        await asyncio.sleep(1)
        # A client of its own address still gets through, more than once.
        path = heartbeat_path(namespace, "kept")
        statuses = [await beat_from(target, "127.0.0.9", path, token) for _ in range(3)]
        assert statuses == [200, 200, 200]
        async with http.get(f"http://127.0.0.1:{target.probe_port}/readyz") as ready:
            assert ready.status == 200
        assert await asyncio.to_thread(create_through_the_webhook, cluster, namespace, "new")
        rss = target.rss_mib()
        print(f"held: {len(held)} TLS connections opened from 5 sources; client {statuses};"
              f" operator RSS {rss:.0f} MiB")  # fmt: skip
        assert rss < RSS_BOUND_MIB
    finally:
        close_all(held)


async def test_withheld_and_oversized_review_bodies_are_bounded_and_dropped(
    target: Target, namespace: str
) -> None:
    limit = max_review_bytes(MAX_BYTES)
    before = target.rss_mib()
    held = await open_tls(target, target.webhook_port, "127.0.0.2", 200)
    try:
        head = (
            "POST /admission/sessions HTTP/1.1\r\nHost: a\r\n"
            f"Content-Type: application/json\r\nContent-Length: {limit}\r\n\r\n"
        ).encode()
        for _, writer in held:
            writer.write(head + b"{" + b" " * (limit - 100))  # and never the rest
        await asyncio.sleep(1)
        # The apiserver still gets its reviews answered: Session writes go on.
        assert await asyncio.to_thread(create_through_the_webhook, target.cluster, namespace, "a")
        grown = target.rss_mib() - before
        print(f"withheld: 200 bodies of {limit} bytes begun; operator RSS +{grown:.1f} MiB")
        assert grown < 40
        await asyncio.sleep(BODY_DEADLINE_SECONDS + 1)
        # Each was refused at once (beyond the listener's 64), gave way to the apiserver's,
        # or was dropped once its body was late: the same source is served again.
        review = json.dumps({"kind": "AdmissionReview", "request": {"uid": "u", "object": {}}})
        [(reader, writer)] = await open_tls(target, target.webhook_port, "127.0.0.2", 1)
        writer.write(
            b"POST /admission/sessions HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            + f"Content-Length: {len(review)}\r\n\r\n{review}".encode()
        )
        assert (await first_line(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        close_all(held)
    # A whole review far over the limit is refused with the limit, read but never held.
    huge = session_body(namespace, "huge", 1024 * 1024)
    review = json.dumps({"kind": "AdmissionReview", "request": {"uid": "u-1", "object": huge}})
    [(reader, writer)] = await open_tls(target, target.webhook_port, "127.0.0.3", 1)
    writer.write(
        b"POST /admission/sessions HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        + f"Content-Length: {len(review)}\r\n\r\n{review}".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert f"at most {MAX_BYTES} are accepted".encode() in answer


async def test_a_flood_of_garbage_tokens_leaves_a_real_client_its_session(
    target: Target, namespace: str
) -> None:
    cluster = target.cluster
    lease = {"lease": {"ttlSeconds": 6, "heartbeatIntervalSeconds": 1}}
    create_session(cluster, namespace, "kept", lease)
    wait_for_state(cluster, namespace, "kept", {"ready"}, timeout=10)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    path = heartbeat_path(namespace, "kept")
    flooding = True
    flood_answers: dict[int, int] = {}

    async def flood() -> None:
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), ssl=target.tls, limit=0)
        async with aiohttp.ClientSession(connector=connector) as client:
            while flooding:
                garbage = {"Authorization": f"Bearer {secrets.token_urlsafe(600)}"}
                async with client.post(target.operator.url + path, headers=garbage) as answer:
                    flood_answers[answer.status] = flood_answers.get(answer.status, 0) + 1

    flooders = [asyncio.create_task(flood()) for _ in range(300)]
    client_answers = []
    try:
        await asyncio.sleep(2)
        started = time.monotonic()
        while time.monotonic() - started < 15:  # the auth cache (1 s) runs out every beat
            client_answers.append(await beat_from(target, "127.0.0.3", path, token))
            await asyncio.sleep(1)
    finally:
        flooding = False
        await asyncio.gather(*flooders, return_exceptions=True)
    print(f"flood: answers {flood_answers}; client {client_answers}")
    assert sum(flood_answers.values()) > 500, flood_answers
    assert 503 in flood_answers, flood_answers  # the flood got no more than its share
    assert client_answers.count(200) >= len(client_answers) - 2, client_answers
    assert read_session(cluster, namespace, "kept")["status"]["state"] == "ready"


def test_a_session_just_under_the_limit_still_expires_releases_its_pod_and_deletes(
    target: Target, namespace: str
) -> None:
    cluster = target.cluster
    lease = {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}
    body = session_body(namespace, "large", MAX_BYTES - 1024, lease)
    created = cluster.kubectl("create", "-f", "-", input_text=json.dumps(body), check=False)
    assert created.returncode == 0, created.stderr
    # Its state label and finalizer make it grow past the limit: the operator's writes pass.
    wait_for_state(cluster, namespace, "large", {"starting"}, timeout=15)
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()
    assert pods, "its Pod was created"
    stopped, _ = wait_for_state(cluster, namespace, "large", {"stopped"}, timeout=30)
    assert stopped["status"]["stopReason"] == "LEASE_EXPIRED"
    # As the webhook sees it (managedFields too), it outgrew the limit on the way.
    as_stored = cluster.kubectl(
        "get", "session", "large", "-n", namespace, "-o", "json", "--show-managed-fields"
    ).stdout
    assert len(json.dumps(json.loads(as_stored), separators=(",", ":"))) > MAX_BYTES
    assert wait_for(
        lambda: not cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip(),
        timeout=30,
    ), "its Pod was released"
    deleted = cluster.kubectl("delete", "session", "large", "-n", namespace, "--timeout=30s")
    assert deleted.returncode == 0, deleted.stderr
