"""A bad setting stops the operator at start with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"XG2G_SESSION_LEASE_TTL": "0s"}, "XG2G_SESSION_LEASE_TTL"),
        ({"XG2G_SESSION_LEASE_TTL": "-5s"}, "XG2G_SESSION_LEASE_TTL"),
        ({"XG2G_SESSION_LEASE_TTL": "abc"}, "XG2G_SESSION_LEASE_TTL"),
        (
            {"XG2G_SESSION_LEASE_TTL": "10s", "XG2G_SESSION_HEARTBEAT_INTERVAL": "5s"},
            "XG2G_SESSION_HEARTBEAT_INTERVAL",
        ),
    ],
)
def test_invalid_setting_exits_non_zero_with_one_line_naming_it(
    environment: dict[str, str], named: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XG2G_SESSION_")}
    result = subprocess.run(
        [sys.executable, "-m", "session_operator", "run"],
        env={**env, **environment, "KUBECONFIG": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr
