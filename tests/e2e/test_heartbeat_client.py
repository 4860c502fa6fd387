"""session_operator.heartbeat_client and ``session-operator heartbeat`` against the real API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from harness.certificates import self_signed_certificate
from session_operator.heartbeat_client import HeartbeatClient, HeartbeatFailed
from session_operator.timestamps import parse_timestamp
from tests.e2e.conftest import HEARTBEAT_AUDIENCE, Cluster, OperatorProcess, as_from_a_terminal
from tests.e2e.heartbeats import (
    call,
    create_token,
    heartbeat_path,
    player_token_file,
    ready_session,
    service_account,
)
from tests.e2e.sessions import read_session, wait_for_state

SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
LONG_LEASE = {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 1}}


async def test_client_keeps_a_session_alive_past_several_ttls_then_it_expires(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    ready_session(cluster, namespace, "kept", SHORT_LEASE)
    token_file = player_token_file(cluster, namespace, tmp_path)

    async with (
        HeartbeatClient(
            operator.url, f"{namespace}/kept", token_file=token_file, allow_http=True
        ) as client,
        client.in_background() as heartbeat,
    ):
        started = time.monotonic()
        while time.monotonic() - started < 10:  # more than three TTLs
            await asyncio.sleep(0.5)
            assert await _state(cluster, namespace, "kept") == "ready"
        assert heartbeat.ended is None
    stopped_beating = time.monotonic()

    body, _ = wait_for_state(cluster, namespace, "kept", {"stopped"}, timeout=6)
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    assert time.monotonic() - stopped_beating >= 1.5, "the lease must outlive the last beat"
    last = parse_timestamp(body["status"]["lastHeartbeat"])
    expired = parse_timestamp(body["status"]["leaseExpiresAt"])
    assert (expired - last).total_seconds() == 3


async def test_client_reads_the_rotated_token_file_before_each_beat(
    cluster: Cluster,
    heartbeat_api: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # heartbeat_api caches auth decisions for 1 s: a token that died is refused quickly.
    ready_session(cluster, namespace, "rotated", SHORT_LEASE)
    cluster.kubectl("create", "secret", "generic", "first-token-holder", "-n", namespace)
    first = service_account(
        cluster,
        namespace,
        "player",
        bind_in=namespace,
        audience=HEARTBEAT_AUDIENCE,
        bound_secret="first-token-holder",
    )
    token_file = tmp_path / "token"
    token_file.write_text(first)

    async with (
        HeartbeatClient(
            heartbeat_api.url, f"{namespace}/rotated", token_file=token_file, allow_http=True
        ) as client,
        client.in_background() as heartbeat,
    ):
        await asyncio.sleep(2)
        # The kubelet's rotation: a new token in the file, then the old one stops working
        # (once the apiserver's own 10 s cache of accepted tokens lets go of it).
        token_file.write_text(
            create_token(cluster, namespace, "player", audience=HEARTBEAT_AUDIENCE)
        )
        cluster.kubectl("delete", "secret", "first-token-holder", "-n", namespace)
        url = heartbeat_api.url + heartbeat_path(namespace, "rotated")
        started = time.monotonic()
        while (await asyncio.to_thread(call, "POST", url, first)).status != 401:
            assert time.monotonic() - started < 30, "the first token never died"
            assert await _state(cluster, namespace, "rotated") == "ready"
            await asyncio.sleep(0.5)
        # Only the new token works now: the session lives on only if the client uses it.
        started = time.monotonic()
        while time.monotonic() - started < 4.5:  # more than one TTL
            await asyncio.sleep(0.5)
            assert await _state(cluster, namespace, "rotated") == "ready"
        assert heartbeat.ended is None


async def test_client_stops_and_reports_when_the_session_is_stopped(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    ready_session(cluster, namespace, "ended", LONG_LEASE)
    token_file = player_token_file(cluster, namespace, tmp_path)

    async with (
        HeartbeatClient(
            operator.url, f"{namespace}/ended", token_file=token_file, allow_http=True
        ) as client,
        client.in_background() as heartbeat,
    ):
        await asyncio.sleep(1.5)
        assert heartbeat.ended is None
        cluster.kubectl(
            "patch", "session", "ended", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"stop": true}}',
        )  # fmt: skip
        ended = await asyncio.wait_for(heartbeat.wait(), timeout=5)

    assert ended.status == 410
    assert ended.state in {"stopping", "stopped"}
    assert ended.stop_reason == "USER_STOPPED"


def test_heartbeat_command_once_prints_the_acknowledgement_and_exits_3_when_gone(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    session_id = ready_session(cluster, namespace, "cli", LONG_LEASE)
    token_file = player_token_file(cluster, namespace, tmp_path)

    def heartbeat_once_without_allow_http() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable, "-m", "session_operator", "heartbeat", f"{namespace}/cli",
                "--once", "--url", operator.url, "--token-file", str(token_file),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip

    def heartbeat_once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable, "-m", "session_operator", "heartbeat", f"{namespace}/cli",
                "--once", "--url", operator.url, "--token-file", str(token_file), "--allow-http",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip

    refused = heartbeat_once_without_allow_http()
    assert refused.returncode == 2
    assert "refusing to send a bearer token over plain HTTP" in refused.stderr
    beat = heartbeat_once()
    assert beat.returncode == 0, beat.stderr
    answer = json.loads(beat.stdout)
    assert answer["session_id"] == session_id
    assert answer["acknowledged"] is True
    assert (
        read_session(cluster, namespace, "cli")["status"]["leaseExpiresAt"]
        == answer["lease_expires_at"]
    )

    cluster.kubectl(
        "patch", "session", "cli", "-n", namespace, "--type=merge", "-p", '{"spec": {"stop": true}}'
    )
    wait_for_state(cluster, namespace, "cli", {"stopped"}, timeout=5)
    gone = heartbeat_once()
    assert gone.returncode == 3, gone
    assert "410" in gone.stderr
    assert "Traceback" not in gone.stderr


async def test_client_speaks_https_to_an_api_serving_a_certificate(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert_file))
    api = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "serve-api.log",
        {"XG2G_SESSION_TLS_CERT_FILE": str(cert_file), "XG2G_SESSION_TLS_KEY_FILE": str(key_file)},
        command="serve-api",
        tls=trusted,
    )
    ready_session(cluster, namespace, "secure", LONG_LEASE)
    token_file = player_token_file(cluster, namespace, tmp_path)
    api.start()
    try:
        assert api.url.startswith("https://")
        async with HeartbeatClient(
            api.url, f"{namespace}/secure", token_file=token_file, ssl=trusted
        ) as client:
            ack = await client.beat()
        assert ack.lease_expires_at > datetime.now(UTC)
        async with HeartbeatClient(api.url, f"{namespace}/secure", token_file=token_file) as client:
            with pytest.raises(HeartbeatFailed, match="certificate"):
                await client.beat()  # the system trust store does not know this CA
    finally:
        api.stop()


async def _state(cluster: Cluster, namespace: str, name: str) -> str:
    """The stored state of a Session, read without blocking the client's event loop."""
    body = await asyncio.to_thread(read_session, cluster, namespace, name)
    state: str = body["status"]["state"]
    return state


def test_heartbeat_command_from_a_terminal_finds_the_namespace_and_prints_each_beat(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    ready_session(
        cluster, namespace, "desk", {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 1}}
    )
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    # A kubeconfig whose context names the namespace, as `kubectl config set-context` does.
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    for context in kubeconfig["contexts"]:
        context["context"]["namespace"] = namespace
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
        "SESSION_API_URL": operator.url,
        "SESSION_API_TOKEN": token,
    }
    command = [sys.executable, "-m", "session_operator", "heartbeat", "desk", "--allow-http", "-v"]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    time.sleep(3.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130, err
    lines = out.splitlines()
    assert len(lines) >= 3, (out, err)
    assert all(
        line.startswith(f"{namespace}/desk: lease until ") and line.endswith("next heartbeat in 1s")
        for line in lines
    ), lines
    assert "Traceback" not in err


def test_heartbeat_command_with_a_token_for_the_apiservers_audience_stops_at_once(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
) -> None:
    # `kubectl create token` without --audience: a newcomer's first token.
    ready_session(cluster, namespace, "audience", LONG_LEASE)
    service_account(cluster, namespace, "player", bind_in=namespace)
    apiservers = create_token(cluster, namespace, "player", audience=None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "session_operator", "heartbeat", f"{namespace}/audience",
         "--url", operator.url, "--allow-http", "-v"],
        env={**os.environ, "SESSION_API_TOKEN": apiservers},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert time.monotonic() - started < 10, "it kept trying a token that cannot change"
    assert "retrying" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("session-operator heartbeat: heartbeat refused (401): "), last


def test_heartbeat_command_keeps_a_session_alive_while_its_command_runs_then_stops_it(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    token_file = player_token_file(cluster, namespace, tmp_path)
    ready_session(cluster, namespace, "wrapped", SHORT_LEASE)  # 3 s to the first beat
    # --stop-on-exit sets spec.stop with the kubeconfig's credentials (the admin's here).
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    process = subprocess.Popen(
        [sys.executable, "-m", "session_operator", "heartbeat", f"{namespace}/wrapped",
         "--url", operator.url, "--allow-http", "--token-file", str(token_file),
         "--stop-on-exit", "--", "sh", "-c", "sleep 7; exit 7"],
        env={**env, "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    started = time.monotonic()
    while process.poll() is None:
        elapsed = time.monotonic() - started
        assert elapsed < 30, "the command outlived its seven seconds"
        # CMD starts after the first beat, so it surely runs for the first 6 s (two TTLs):
        # the session is live all that time. Later the wrapper may be stopping it.
        if elapsed < 6:
            status = read_session(cluster, namespace, "wrapped")["status"]
            assert status["state"] == "ready", status
        time.sleep(0.5)
    out, err = process.communicate()

    assert process.returncode == 7, err
    assert time.monotonic() - started >= 7
    assert (out, err) == ("", "")
    body, _ = wait_for_state(cluster, namespace, "wrapped", {"stopped"}, timeout=10)
    assert body["spec"]["stop"] is True
    assert body["status"]["stopReason"] == "USER_STOPPED"
