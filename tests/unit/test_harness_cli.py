"""The local-cluster command refuses a bad setting in one line, before it builds or starts
anything, serves the operator's plain-HTTP API on loopback unless told otherwise, and prints
the lines a newcomer needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.__main__ import operator_environment, print_how_to_use

REPO = Path(__file__).resolve().parents[2]


def test_a_bad_setting_stops_make_run_at_once_in_one_line() -> None:
    env = {**os.environ, "XG2G_SESSION_LEASE_TTL": "abc"}
    env.pop("KUBECONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid configuration: XG2G_SESSION_LEASE_TTL: must be a positive duration"
        " like 60s, 2m, 1h30m (got 'abc')"
    ]
    assert "starting etcd" not in result.stdout


def test_make_run_serves_the_operator_api_on_loopback_only() -> None:
    env = operator_environment({"PATH": "/usr/bin"}, "/tmp/kubeconfig")
    assert env["XG2G_SESSION_API_HOST"] == "127.0.0.1"
    assert env["KUBECONFIG"] == "/tmp/kubeconfig"
    assert env["PATH"] == "/usr/bin"


def test_make_run_keeps_the_address_the_user_chose() -> None:
    env = operator_environment({"XG2G_SESSION_API_HOST": "0.0.0.0"}, "/tmp/kubeconfig")
    assert env["XG2G_SESSION_API_HOST"] == "0.0.0.0"


def test_make_run_node_says_where_a_pods_logs_are(capsys: pytest.CaptureFixture[str]) -> None:
    # `kubectl logs` cannot reach the node's kubelet: the lines name the files instead.
    logs = Path("/tmp/xg2g-controlplane-x/node/pod-logs")
    print_how_to_use(Path("kubectl"), Path("/tmp/kubeconfig"), 8080, REPO, pod_logs=logs)
    printed = capsys.readouterr().out.splitlines()
    assert f"  tail -n 20 {logs}/default_web_*/web/*.log" in printed
    assert any("`kubectl logs` cannot reach the kubelet" in line for line in printed)


def test_make_run_says_how_to_start_the_sample_again(capsys: pytest.CaptureFixture[str]) -> None:
    print_how_to_use(Path("kubectl"), Path("/tmp/kubeconfig"), 8080, REPO, pod_logs=None)
    printed = capsys.readouterr().out
    sample = REPO / "hack/samples/session.yaml"
    assert f"kubectl --kubeconfig=/tmp/kubeconfig delete -f {sample} --ignore-not-found" in printed
    assert "pod-logs" not in printed
