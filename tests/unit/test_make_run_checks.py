"""What ``make run`` checks before it starts anything: the apiserver a KUBECONFIG names (as
kubectl merges its files), and a port another program holds."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from harness.make_run_checks import RunRefused, current_server, refuse_taken_port


def kubeconfig(
    current: str | None = None,
    contexts: dict[str, str] | None = None,
    clusters: dict[str, str] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "contexts": [{"name": n, "context": {"cluster": c}} for n, c in (contexts or {}).items()],
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in (clusters or {}).items()],
    }
    if current:
        document["current-context"] = current
    return document


def test_the_server_is_the_current_contexts_clusters() -> None:
    document = kubeconfig(
        "b", {"a": "one", "b": "two"}, {"one": "https://1:6443", "two": "https://2:6443"}
    )
    assert current_server([document]) == "https://2:6443"


def test_the_first_file_to_name_a_thing_wins_as_in_kubectl() -> None:
    first = kubeconfig("work", {"work": "local"})
    second = kubeconfig("other", {"work": "elsewhere"}, {"local": "https://127.0.0.1:39315"})
    assert current_server([first, second]) == "https://127.0.0.1:39315"


@pytest.mark.parametrize(
    "document",
    [kubeconfig(), kubeconfig("gone", {"x": "c"}, {"c": "https://c"}), kubeconfig("x", {"x": "c"})],
)
def test_a_kubeconfig_that_names_no_server_gives_none(document: dict[str, Any]) -> None:
    assert current_server([document]) is None


def test_a_port_another_program_listens_on_is_refused_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RunRefused, match=f"port {port}: already in use by another program"):
            refuse_taken_port("127.0.0.1", port, "XG2G_SESSION_API_PORT")
    refuse_taken_port("127.0.0.1", port, "XG2G_SESSION_API_PORT")  # free again
