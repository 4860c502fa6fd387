"""The local-cluster command refuses a bad setting in one line, before it builds or starts
anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
