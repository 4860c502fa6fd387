"""``session-operator`` says what went wrong in one line, never with a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from session_operator import __version__
from tests.kubeconfigs import unreachable_kubeconfig
from tests.unit.builders import session_operator


def test_version() -> None:
    result = session_operator("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"session-operator {__version__}"


def test_no_cluster_is_one_line_that_says_how_to_point_at_one(tmp_path: Path) -> None:
    result = session_operator("run", HOME=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "session-operator: no cluster found: set KUBECONFIG to a kubeconfig file (or create"
        " ~/.kube/config), or run it in a Pod of the cluster"
    ]


def test_a_kubeconfig_variable_naming_no_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "kubeconfig"
    result = session_operator("run", KUBECONFIG=str(missing), HOME=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"session-operator: KUBECONFIG={missing} names no file: point it at a kubeconfig"
        " file, or unset it to use ~/.kube/config"
    ]


def test_a_taken_port_is_one_line_naming_it(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = session_operator(
            "serve-api",
            KUBECONFIG=str(kubeconfig),
            XG2G_SESSION_API_HOST="127.0.0.1",
            XG2G_SESSION_API_PORT=str(port),
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"session-operator: cannot listen on 127.0.0.1 port {port}: already in use; choose"
        " another with XG2G_SESSION_API_PORT (XG2G_SESSION_METRICS_PORT)"
    ]
