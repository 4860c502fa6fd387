"""A stopped node leaves the machine as it found it (docs/node.md, "Kernel settings" and
"Stopping"): the kernel settings its kubelet changed are written back, the ``k8s.io``
cgroups it made go and one it did not make stays, and nothing is removed while something
is still mounted under it.

One control plane and node run a Pod for the whole module; the tests compare the machine
before the node started, while it ran, and after it stopped.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import LocalControlPlane, ensure_built, toolchain
from harness.engine import DockerEngine
from harness.kernel_settings import (
    KUBELET_KERNEL_SETTINGS,
    SYSCTL_ROOT,
    read_kernel_settings,
)
from harness.netns import NamespaceError
from harness.node import (
    CGROUP_PARENT,
    CGROUP_ROOT,
    LocalNode,
    NodeError,
    k8s_io_cgroups,
    node_unavailable_reason,
)
from harness.node_config import PAUSE_IMAGE
from harness.node_images import NodeImageError, build_pause_image, save_images
from harness.processes import remove_unmounted_tree
from tests.e2e.conftest import REPO, unavailable

pytestmark = pytest.mark.e2e

_MNT_DETACH = 2


@dataclass(frozen=True)
class Machine:
    """The kernel settings the kubelet changes, and the ``k8s.io`` cgroups (those below
    them too), at one moment."""

    kernel: dict[str, str]
    cgroups: set[Path]

    @classmethod
    def now(cls) -> Machine:
        """What they are now."""
        return cls(read_kernel_settings(), k8s_io_cgroups())


@dataclass(frozen=True)
class NodeRun:
    """The machine before a node started, while it ran a Pod, and after it stopped."""

    before: Machine
    running: Machine
    stopped: Machine
    machines_cgroup: Path
    """A ``k8s.io`` cgroup made before the node started, as the machine's own would be."""


@pytest.fixture(scope="module")
def node_run(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> NodeRun:
    """A control plane and node of the module's own, started, running a Pod, stopped."""
    chain = ensure_built(toolchain(repo_root=REPO), REPO, node=True)
    reason = node_unavailable_reason(chain)
    if reason:
        unavailable(f"this machine cannot host a node: {reason}")
    images = tmp_path_factory.mktemp("node") / "images.tar"
    save_images(docker_engine, [build_pause_image(docker_engine, REPO)], images)
    with panic_on_oops_off_meanwhile(), a_k8s_io_cgroup_of_the_machine() as machines_cgroup:
        before = Machine.now()
        with LocalControlPlane(chain) as control_plane:
            node = LocalNode(control_plane, images=images)
            try:
                node.start()
            except (NodeError, NamespaceError, NodeImageError) as error:
                unavailable(f"the node did not start: {error}")
            try:
                run_a_pod(control_plane)
                running = Machine.now()
            finally:
                node.stop()
            stopped = Machine.now()
        return NodeRun(before, running, stopped, machines_cgroup)


def test_a_stopped_node_leaves_the_kernel_settings_as_it_found_them(node_run: NodeRun) -> None:
    changed = {
        name
        for name, value in node_run.before.kernel.items()
        if node_run.running.kernel.get(name) != value
    }
    assert "kernel/panic_on_oops" in changed, "the kubelet changed them while the node ran"
    assert node_run.stopped.kernel == node_run.before.kernel


def test_a_stopped_node_removes_the_k8s_io_cgroups_it_made(node_run: NodeRun) -> None:
    made = node_run.running.cgroups - node_run.before.cgroups
    assert made, "the Pod's containers needed k8s.io cgroups"
    assert not made & node_run.stopped.cgroups


def test_a_stopped_node_leaves_a_k8s_io_cgroup_it_did_not_make(node_run: NodeRun) -> None:
    assert node_run.machines_cgroup in node_run.running.cgroups
    assert node_run.machines_cgroup in node_run.stopped.cgroups


def test_a_directory_with_something_still_mounted_under_it_is_not_removed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        unavailable("mounting a file system needs root")
    volume = tmp_path / "node" / "kubelet" / "pods" / "a-pod" / "volumes" / "data"
    volume.mkdir(parents=True)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    assert libc.mount(b"tmpfs", str(volume).encode(), b"tmpfs", 0, None) == 0, os.strerror(
        ctypes.get_errno()
    )
    try:
        (volume / "not-the-harness's").write_text("kept")
        remove_unmounted_tree(tmp_path / "node")
        assert (volume / "not-the-harness's").read_text() == "kept"
    finally:
        libc.umount2(str(volume).encode(), _MNT_DETACH)
    said = capfd.readouterr().err.splitlines()
    assert said == [f"not removing {tmp_path / 'node'}: {volume} still mounted under it"]


@contextmanager
def panic_on_oops_off_meanwhile() -> Iterator[None]:
    """``kernel.panic_on_oops`` at 0, the kernel's default, while the block runs (so the
    kubelet, which sets it to 1, has something to change, whatever an earlier run left);
    the value found is written back afterwards."""
    setting = SYSCTL_ROOT / "kernel" / "panic_on_oops"
    assert KUBELET_KERNEL_SETTINGS["kernel/panic_on_oops"] == 1
    found = setting.read_text()
    setting.write_text("0\n")
    try:
        yield
    finally:
        setting.write_text(found)


@contextmanager
def a_k8s_io_cgroup_of_the_machine() -> Iterator[Path]:
    """A ``k8s.io`` cgroup that is there before the node starts (in the pids hierarchy of
    cgroup v1, or the v2 root), removed afterwards if this made it (and a node did not)."""
    hierarchy = CGROUP_ROOT / "pids" if (CGROUP_ROOT / "pids").is_dir() else CGROUP_ROOT
    cgroup = hierarchy / CGROUP_PARENT
    made_here = not cgroup.exists()
    cgroup.mkdir(exist_ok=True)
    try:
        yield cgroup
    finally:
        if made_here and cgroup.exists():
            cgroup.rmdir()


def run_a_pod(control_plane: LocalControlPlane) -> None:
    """Run a Pod of the pause image on the node, in ``default``, until it is Ready."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pause", "namespace": "default"},
        "spec": {
            "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    control_plane.kubectl("create", "-f", "-", input_text=json.dumps(pod))
    control_plane.kubectl("wait", "--for=condition=Ready", "--timeout=90s", "pod/pause")
