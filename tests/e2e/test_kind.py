"""The kind tier: ``make kind-up deploy`` for real, on a node image built here.

Opt-in (``KIND_E2E=1``, what ``make test-kind`` sets): a cold run builds the node image
(``make kind-node-image``, minutes) and each run creates a cluster. With DOCKER_HOST set,
kind uses that engine; without it, a kind engine of the harness's own
(:mod:`harness.kind_engine`). The cluster is deleted at the end, whatever happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness import toolchain
from harness.kind_engine import KindEngine

pytestmark = [
    pytest.mark.kind,
    pytest.mark.skipif(
        not os.environ.get("KIND_E2E"),
        reason="opt-in kind tier: run `make test-kind` (sets KIND_E2E=1; as root, ~20 min cold)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "slo-kind-e2e"
NAMESPACE = "kind-e2e"
SAMPLE = REPO / "hack/samples/session-with-pod.yaml"


def local_node_image() -> str:
    """KIND_LOCAL_NODE_IMAGE, as the Makefile names it."""
    found = re.search(r"^KIND_LOCAL_NODE_IMAGE\s*=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert found, "the Makefile names no KIND_LOCAL_NODE_IMAGE"
    return found[1]


@pytest.fixture(scope="module")
def kind_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for make, kind and kubectl: a Docker engine and a kubeconfig of
    the test's own."""
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    if os.environ.get("DOCKER_HOST"):
        yield env
        return
    engine = KindEngine()
    engine.start()
    try:
        yield {**env, "DOCKER_HOST": engine.docker_host}
    finally:
        engine.stop()


def make(env: dict[str, str], *targets: str, timeout: float) -> float:
    """``make TARGETS`` on the test's cluster and the local node image; seconds taken."""
    started = time.monotonic()
    argv = ["make", "--no-print-directory", f"KIND_CLUSTER={CLUSTER}"]
    argv.append(f"KIND_NODE_IMAGE={local_node_image()}")
    result = subprocess.run([*argv, *targets], cwd=REPO, env=env, timeout=timeout, check=False)
    assert result.returncode == 0, f"make {' '.join(targets)} failed"
    return time.monotonic() - started


def test_make_kind_up_deploy_runs_a_session_to_ready(kind_env: dict[str, str]) -> None:
    kubectl = [str(toolchain(repo_root=REPO).kubectl), f"--context=kind-{CLUSTER}"]
    try:
        image_seconds = make(kind_env, "kind-node-image", timeout=3600)
        up_seconds = make(kind_env, "kind-up", "deploy", timeout=1800)
        session = yaml.safe_load(SAMPLE.read_text())
        session["metadata"]["namespace"] = NAMESPACE
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], env=kind_env, check=True)
        created = time.monotonic()
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump(session), text=True, env=kind_env, check=True,
        )  # fmt: skip
        state = ""
        while state != "ready" and time.monotonic() - created < 120:
            time.sleep(0.5)
            state = subprocess.run(
                [*kubectl, "get", "session", session["metadata"]["name"], "-n", NAMESPACE,
                 "-o", "jsonpath={.status.state}"],
                capture_output=True, text=True, env=kind_env, check=False,
            ).stdout  # fmt: skip
        ready_seconds = time.monotonic() - created
        print(
            f"\nkind tier: node image {image_seconds:.0f}s, kind-up deploy {up_seconds:.0f}s,"
            f" Session with a Pod ready {ready_seconds:.1f}s after create"
        )
        assert state == "ready", f"the Session is {state or 'without a state'} after 120 s"
    finally:
        make(kind_env, "kind-down", timeout=300)
