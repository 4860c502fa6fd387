"""What ``kubectl get sessions`` shows: each lifecycle step once or twice with ``-w``, not
five times; and for a stopped session, when its lease ended.

Every write to a Session is a watch event and a row: the operator writes a transition's
status and then its state label (the label write also holds the finalizer), and nothing
else. A step therefore prints at most two rows with its state.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from harness.operator_process import OperatorProcess
from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.sessions import create_session, wait_for_state

LEASE = {"ttlSeconds": 300, "heartbeatIntervalSeconds": 5}
ROWS_PER_STEP = 2
SETTLE_SECONDS = 2.0
"""Quiet time after the last step, for any late write to show."""


@contextmanager
def watched_rows(cluster: Cluster, namespace: str, name: str) -> Iterator[list[str]]:
    """The rows ``kubectl get session NAME -w`` prints meanwhile, as the states they show."""
    kubectl = cluster.kubectl
    argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", "sessions",
            "-n", namespace, "--watch", "--no-headers",
            "--field-selector", f"metadata.name={name}",
            "-o", "custom-columns=STATE:.status.state"]  # fmt: skip
    rows: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as watch:
        try:
            yield rows
            time.sleep(SETTLE_SECONDS)
        finally:
            watch.terminate()
            output, _ = watch.communicate(timeout=10)
    rows.extend(line.strip() for line in output.splitlines())


def test_create_and_stop_print_at_most_two_rows_per_state(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    with watched_rows(cluster, namespace, "rows") as rows:
        time.sleep(0.5)  # the watch is open before the Session exists
        create_session(cluster, namespace, "rows", {"lease": LEASE})
        wait_for_state(cluster, namespace, "rows", {"ready"}, timeout=10)
        assert wait_for(lambda: _labelled(cluster, namespace, "ready"), timeout=10)
        cluster.kubectl("patch", "session", "rows", "-n", namespace, "--type=merge",
                        "-p", '{"spec":{"stop":true}}')  # fmt: skip
        wait_for_state(cluster, namespace, "rows", {"stopped"}, timeout=10)
        assert wait_for(lambda: _labelled(cluster, namespace, "stopped"), timeout=10)

    shown = Counter(rows)
    # Created (no status yet), then ready: its status, then its label and finalizer.
    assert shown["<none>"] == 1, rows
    assert shown["ready"] <= ROWS_PER_STEP + 1, rows  # + the user's own spec.stop write
    assert shown["stopped"] <= ROWS_PER_STEP, rows
    assert set(shown) == {"<none>", "ready", "stopped"}, rows


def test_a_stopped_session_shows_when_its_lease_ended(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "ended", {"lease": LEASE})
    wait_for_state(cluster, namespace, "ended", {"ready"}, timeout=10)
    cluster.kubectl("patch", "session", "ended", "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"stop":true}}')  # fmt: skip
    body, _ = wait_for_state(cluster, namespace, "ended", {"stopped"}, timeout=10)

    status = body["status"]
    assert status["leaseExpiresAt"] == status["stoppedAt"]  # not 300 s ahead
    row = cluster.kubectl("get", "session", "ended", "-n", namespace, "--no-headers").stdout
    assert row.split()[:3] == ["ended", "stopped", status["stoppedAt"]]


def _labelled(cluster: Cluster, namespace: str, state: str) -> bool:
    listed = cluster.kubectl(
        "get", "sessions", "-n", namespace, "-l", f"xg2g.io/state={state}", "-o", "name"
    ).stdout
    return "session.xg2g.io/rows" in listed
