"""``kubectl session`` against the real apiserver and operator: the installed
``kubectl-session`` executable, run as a person runs it, with a kubeconfig whose context
names the namespace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from harness.operator_process import OperatorProcess
from tests.e2e.conftest import Cluster, as_from_a_terminal, wait_for
from tests.e2e.heartbeats import ready_session, service_account
from tests.e2e.sessions import read_session, wait_for_state

EXECUTABLE = Path(sys.executable).parent / "kubectl-session"
LONG_LEASE = {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 1}}
SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}


@pytest.fixture
def person(cluster: Cluster, namespace: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a person whose kubeconfig's current context is in *namespace*
    (as `kubectl config set-context --current --namespace` leaves it), with
    ``kubectl-session`` and kubectl on PATH."""
    if not EXECUTABLE.is_file():
        pytest.fail(f"{EXECUTABLE} is not installed: `make install` installs the package's scripts")
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    for context in kubeconfig["contexts"]:
        context["context"]["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    search = os.pathsep.join([str(EXECUTABLE.parent), str(cluster.kubectl.binary.parent)])
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SESSION_API_") and key != "COLUMNS"
    }
    return {**environment, "KUBECONFIG": str(path), "PATH": search}


@pytest.fixture
def player(cluster: Cluster, heartbeat_role: str, namespace: str) -> str:
    """A ServiceAccount of *namespace* that may beat there; its name."""
    service_account(cluster, namespace, "player", bind_in=namespace)
    return "player"


def kubectl_session(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_list_get_beat_stop_wait_and_describe_a_session(
    cluster: Cluster, operator: OperatorProcess, namespace: str, person: dict[str, str], player: str
) -> None:
    ready_session(cluster, namespace, "desk", LONG_LEASE)

    listed = kubectl_session(person, "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "TIME", "LEFT", "LAST", "BEAT", "REASON"]
    assert re.fullmatch(r"desk +ready +[12]?\ds +- +-", row), row

    # The same through kubectl's plugin mechanism: `kubectl session` finds it on PATH.
    plugin = subprocess.run(
        [str(cluster.kubectl.binary), "session", "get", "desk", "nope"],
        env=person, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert plugin.returncode == 1
    assert plugin.stdout.splitlines()[1].split()[:2] == ["desk", "ready"]
    assert plugin.stderr.splitlines() == [
        f'error: session "nope" not found in namespace "{namespace}"'
    ]

    beat = kubectl_session(
        person, "beat", "desk", "--url", operator.url, "--allow-http", "--service-account", player
    )
    assert beat.returncode == 0, beat.stderr
    stored = read_session(cluster, namespace, "desk")["status"]
    assert re.fullmatch(
        rf"session/desk: lease until {stored['leaseExpiresAt']} \(2\ds left\),"
        r" next heartbeat in 1s\n",
        beat.stdout,
    ), beat.stdout
    assert "lastHeartbeat" in stored
    row = kubectl_session(person, "get", "desk").stdout.splitlines()[1]
    assert re.fullmatch(r"desk +ready +2\ds +\ds +-", row), row

    waited = kubectl_session(person, "wait", "desk", "--for=stopped", "--timeout=2s")
    assert waited.returncode == 1
    assert waited.stderr.splitlines() == [
        'error: timed out after 2s waiting for session "desk" to be stopped (state: ready)'
    ]

    stop = kubectl_session(person, "stop", "desk")
    assert (stop.returncode, stop.stdout) == (0, "session/desk: stop requested\n"), stop.stderr
    waited = kubectl_session(person, "wait", "desk", "--for=stopped", "--timeout=30s")
    assert (waited.returncode, waited.stdout) == (0, "session/desk: stopped (USER_STOPPED)\n")
    body = read_session(cluster, namespace, "desk")
    assert body["spec"]["stop"] is True
    assert body["status"]["stopReason"] == "USER_STOPPED"

    never = kubectl_session(person, "wait", "desk", "--for=ready")
    assert never.returncode == 1
    assert never.stderr.splitlines() == [
        'error: session "desk" is stopped (USER_STOPPED): it will never be ready'
    ]
    refused = kubectl_session(
        person, "beat", "desk", "--url", operator.url, "--allow-http", "--service-account", player
    )
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("error: heartbeat refused (410): ")

    described = kubectl_session(person, "describe", "desk")
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert "State:          stopped" in lines
    assert "Stop reason:    USER_STOPPED" in lines
    assert "Time left:      -" in lines
    assert all(len(line) <= 80 for line in lines), described.stdout
    steps = [line.split()[1:4] for line in lines[lines.index("Timeline:") + 2 :] if line[2] != " "]
    assert steps[0] == ["session", "created", "-"]
    assert ["event", "Normal", "Ready"] in steps
    assert ["condition", "Ready=False", "UserStopped"] in steps
    assert steps.index(["event", "Normal", "Ready"]) < steps.index(["event", "Normal", "Stopped"])


def test_beat_watch_keeps_a_session_alive_until_it_is_stopped(
    cluster: Cluster, operator: OperatorProcess, namespace: str, person: dict[str, str], player: str
) -> None:
    ready_session(cluster, namespace, "kept", SHORT_LEASE)
    watch = subprocess.Popen(
        [str(EXECUTABLE), "beat", "kept", "--watch", "--url", operator.url, "--allow-http",
         "--service-account", player],
        env=person, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip
    try:
        # Longer than two TTLs: without the beats the operator would have stopped it.
        with pytest.raises(subprocess.TimeoutExpired):
            watch.wait(timeout=7)
        assert read_session(cluster, namespace, "kept")["status"]["state"] == "ready"
        stop = kubectl_session(person, "stop", "kept", "--wait", "--timeout=20s")
        assert stop.stdout.splitlines() == [
            "session/kept: stop requested",
            "session/kept: stopped (USER_STOPPED)",
        ], stop.stderr
        out, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.send_signal(signal.SIGINT)
            watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) >= 6, out
    assert all(line.startswith("session/kept: lease until ") for line in lines[:-1]), out
    assert re.fullmatch(r"session/kept: ended, (stopping|stopped) \(USER_STOPPED\)", lines[-1])
    assert err == ""
    wait_for_state(cluster, namespace, "kept", {"stopped"}, timeout=5)


def test_hold_keeps_a_session_without_heartbeats_and_release_lets_it_go(
    cluster: Cluster, operator: OperatorProcess, namespace: str, person: dict[str, str]
) -> None:
    ready_session(cluster, namespace, "desk", SHORT_LEASE)

    held = kubectl_session(person, "hold", "desk", "--for", "1h")
    assert held.returncode == 0, held.stderr
    printed = re.fullmatch(
        r"session/desk: hold requested until (\S+) \(60m from now\)\n", held.stdout
    )
    assert printed, held.stdout
    assert read_session(cluster, namespace, "desk")["spec"]["hold"]["until"] == printed[1]
    until = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    moved = kubectl_session(person, "hold", "desk", "--until", until)
    assert moved.returncode == 0, moved.stderr

    def taken_up() -> bool:
        status = read_session(cluster, namespace, "desk")["status"]
        return status.get("holdUntil") == until.replace("Z", ".000Z")

    assert wait_for(taken_up, timeout=5)
    time.sleep(4)  # past the 3 s TTL, without a heartbeat
    row = kubectl_session(person, "get", "desk").stdout.splitlines()[1]
    assert re.fullmatch(r"desk +ready +(29|30)m +- +- +hold (29|30)m", row), row

    released = kubectl_session(person, "release", "desk")
    assert (released.returncode, released.stdout) == (0, "session/desk: hold released\n")
    # Its lease ran out long ago: released, it stops.
    wait_for_state(cluster, namespace, "desk", {"stopped"}, timeout=5)
    again = kubectl_session(person, "release", "desk")
    assert (again.returncode, again.stdout) == (0, "session/desk: not held\n")
    over = kubectl_session(person, "hold", "desk", "--for", "1h")
    assert over.returncode == 1
    assert over.stderr.splitlines() == [
        'error: session "desk" is stopped (LEASE_EXPIRED): a hold keeps only a live session'
    ]
