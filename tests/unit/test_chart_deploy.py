"""Getting the chart onto a cluster without Helm knowledge: the kind tooling, the make
targets' dry runs, and the Dockerfile. kind runs its nodes on the machine's own Docker
engine, and its node image cannot be pulled here, so no kind cluster is created: what can
be checked without one is. The image itself is built and run by tests/e2e/test_image.py."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from harness.binaries import ensure_tool, go_tool, toolchain

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
KIND_CONFIG = REPO / "hack" / "kind" / "kind_config.py"
# A Docker endpoint that cannot exist: kind and docker fail fast, whatever this host runs.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.fixture(scope="module")
def kind() -> Path:
    """The kind binary, built into the binary cache on first use."""
    return ensure_tool(go_tool("kind", REPO), REPO).binary


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A stand-in for .venv, already "installed", so make runs no pip and touches no real
    virtualenv. Its python execs this interpreter by its own path: a symlink would start
    the base interpreter (no pyvenv.cfg beside the link), which lacks the project."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    (tmp_path / ".installed").touch()
    return tmp_path


def make(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``make ARGS`` in the repository with *venv* as its virtualenv and no Docker."""
    return subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **NO_DOCKER},
        timeout=600,
    )


def write_kind_config(path: Path, *args: str) -> dict[str, object]:
    """Run kind_config.py into *path*; the parsed document."""
    argv = [sys.executable, str(KIND_CONFIG), str(path), *args]
    subprocess.run(argv, check=True, capture_output=True)
    document: dict[str, object] = yaml.safe_load(path.read_text())
    return document


def test_kind_is_pinned_and_built(kind: Path) -> None:
    version = subprocess.run([str(kind), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith(f"kind {go_tool('kind', REPO).version} ")
    assert re.fullmatch(r"v0\.33\.\d+", go_tool("kind", REPO).version)


def test_kind_config_has_a_control_plane_and_the_workers(tmp_path: Path) -> None:
    document = write_kind_config(tmp_path / "c.yaml", "--name", "demo", "--workers", "2")
    assert document == {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": "demo",
        "nodes": [{"role": "control-plane"}, {"role": "worker"}, {"role": "worker"}],
    }
    pinned = write_kind_config(tmp_path / "p.yaml", "--name", "d", "--node-image", "img:1")
    assert pinned["nodes"] == [
        {"role": "control-plane", "image": "img:1"},
        {"role": "worker", "image": "img:1"},
    ]


def test_kind_config_refuses_a_bad_cluster_name(tmp_path: Path) -> None:
    argv = [sys.executable, str(KIND_CONFIG), str(tmp_path / "c.yaml"), "--name", "Bad_Name"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a kind cluster name" in result.stderr


def test_kind_reads_the_generated_config(kind: Path, tmp_path: Path) -> None:
    # kind decodes the file strictly (an unknown field is an error) before it needs Docker;
    # with no Docker, getting as far as Docker shows the file was understood.
    config = tmp_path / "c.yaml"
    write_kind_config(config, "--name", "probe")
    broken = tmp_path / "broken.yaml"
    broken.write_text(config.read_text().replace("nodes:", "nodez:"))
    answers = {}
    for path in (config, broken):
        result = subprocess.run(
            [str(kind), "create", "cluster", "--name", "probe", "--config", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, **NO_DOCKER},
            timeout=120,
        )
        assert result.returncode != 0
        answers[path] = result.stdout + result.stderr
    assert "unable to decode config" not in answers[config]
    assert "docker" in answers[config].lower()
    assert "unable to decode config" in answers[broken]


def test_kind_up_dry_run_creates_the_cluster_from_the_generated_config(venv: Path) -> None:
    result = make(venv, "-n", "kind-up", "KIND_CLUSTER=demo", "KIND_WORKERS=2")
    assert result.returncode == 0, result.stderr
    kind = go_tool("kind", REPO).binary
    lines = result.stdout
    assert "hack/kind/kind_config.py hack/kind/generated/demo.yaml --name demo" in lines
    assert "--workers 2" in lines
    assert f"{kind} create cluster --name demo --config hack/kind/generated/demo.yaml" in lines


def test_deploy_dry_run_loads_the_image_and_installs_the_chart(venv: Path) -> None:
    result = make(venv, "-n", "deploy", "KIND_CLUSTER=demo", "IMAGE_TAG=t1")
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stdout.replace("\\\n", " ").split())
    kind, helm = go_tool("kind", REPO).binary, go_tool("helm", REPO).binary
    kubectl = toolchain(repo_root=REPO).kubectl
    steps = [
        f"{venv}/bin/python -m harness image --tag session-lease-operator:t1"
        ' --base-image "" --save build/session-lease-operator-t1.tar',
        f"{kind} load image-archive build/session-lease-operator-t1.tar --name demo",
        f"{kubectl} --context kind-demo apply --server-side -f crds/",
        f"{helm} upgrade --install session-lease-operator helm/session-lease-operator"
        " --kube-context kind-demo --namespace session-lease-operator --create-namespace"
        " --set image.repository=session-lease-operator --set image.tag=t1"
        " --set image.pullPolicy=Never --wait",
    ]
    positions = [flat.find(step) for step in steps]
    assert -1 not in positions, flat
    assert positions == sorted(positions)


def test_kind_up_without_docker_says_so(venv: Path, kind: Path) -> None:
    result = make(venv, "kind-up", "KIND_CLUSTER=demo")
    assert result.returncode != 0
    assert "kind-up: needs a running Docker engine" in result.stderr
    assert not (REPO / "hack/kind/generated/demo.yaml").exists()


def test_image_is_multi_stage_on_the_base_image_arg_non_root_with_the_console_script() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert dockerfile.index("\nARG BASE_IMAGE\n") < dockerfile.index("\nFROM ")
    # A `# syntax=` line makes BuildKit pull its frontend from a registry.
    assert "# syntax=" not in dockerfile
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user == [("65532", "65532")]
    assert 'ENTRYPOINT ["session-operator"]' in dockerfile
    chart_values = yaml.safe_load((REPO / "helm/session-lease-operator/values.yaml").read_text())
    assert chart_values["podSecurityContext"]["runAsUser"] == 65532
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'session-operator = "session_operator.__main__:main"' in pyproject


def test_image_context_is_only_what_pip_install_needs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[:5] == [
        "*",
        "!requirements.lock",
        "!pyproject.toml",
        "!README.md",
        "!operator/",
    ]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M)
    assert copied == ["requirements.lock", "pyproject.toml README.md", "operator"]


def test_the_image_installs_hashed_locked_dependencies_covering_pyproject() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    # The project is built with the locked setuptools: nothing unhashed is downloaded.
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(r"^setuptools==", lock, re.M), "the build backend is locked too"
    # Every pin is followed by its hashes (`name==version \` then `--hash=sha256:...`).
    pins = re.findall(r"^([a-z0-9._-]+)==\S+( \\\n    --hash=sha256:)?", lock, re.M)
    assert pins
    assert all(hashed for _, hashed in pins), "a dependency without hashes: run `make lock`"
    pinned = {name for name, _ in pins}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements.lock: run `make lock`"
