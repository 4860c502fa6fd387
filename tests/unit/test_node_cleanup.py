"""A stopping node undoes only what it made: nothing is removed while mounted, another
harness's namespace is judged by its process's PID and start time, and only the ``k8s.io``
cgroups the node made go (docs/node.md, "Stopping")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.node import (
    k8s_io_cgroups,
    made_by_a_dead_process,
    node_namespace_name,
    remove_cgroups_made_since,
)
from harness.processes import (
    mount_points_in,
    own_start_time,
    process_start_time,
    remove_unmounted_tree,
    start_time_in_stat,
)

pytestmark = pytest.mark.unit

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /tmp/cp/node/kubelet/pods/a/volumes/x rw shared:40 - tmpfs tmpfs rw
91 22 0:51 / /tmp/cp/node/kubelet/pods/b/volumes/with\\040space rw - tmpfs tmpfs rw
92 22 0:52 / /tmp/cp/node-other rw - tmpfs tmpfs rw
93 22 0:53 / /tmp/cp/node rw - tmpfs tmpfs rw
"""


def test_mounts_at_or_below_a_directory_are_found_with_escaped_names_unescaped() -> None:
    assert mount_points_in(MOUNTINFO, "/tmp/cp/node") == [
        "/tmp/cp/node/kubelet/pods/a/volumes/x",
        "/tmp/cp/node/kubelet/pods/b/volumes/with space",
        "/tmp/cp/node",
    ]


def test_a_sibling_whose_name_starts_alike_is_not_under_the_directory() -> None:
    assert "/tmp/cp/node-other" not in mount_points_in(MOUNTINFO, "/tmp/cp/node")


def test_a_directory_with_nothing_mounted_under_it_is_removed(tmp_path: Path) -> None:
    tree = tmp_path / "node"
    (tree / "kubelet" / "pods").mkdir(parents=True)
    (tree / "kubelet" / "pods" / "file").write_text("x")
    remove_unmounted_tree(tree)
    assert not tree.exists()


def test_the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", *[str(n) for n in range(4, 22)], "123456", "0"]
    stat = "4242 (a (strange) name) " + " ".join(fields)
    assert start_time_in_stat(stat) == 123456


def test_a_process_that_is_gone_has_no_start_time() -> None:
    assert process_start_time(2**22 + 1) is None  # above the kernel's largest PID


def test_the_namespace_of_a_living_harness_is_not_stale() -> None:
    assert not made_by_a_dead_process(node_namespace_name(os.getpid(), own_start_time()))


def test_a_namespace_whose_pid_now_names_another_process_is_stale() -> None:
    reused = node_namespace_name(os.getpid(), own_start_time() - 1)
    assert made_by_a_dead_process(reused)


def test_a_namespace_whose_process_is_gone_is_stale() -> None:
    assert made_by_a_dead_process(node_namespace_name(2**22 + 1, 1))


@pytest.mark.parametrize("name", ["cni-1234-5678", "xg2g-node-1", "xg2g-node-x-1", "other"])
def test_namespaces_the_harness_did_not_name_so_are_never_judged_stale(name: str) -> None:
    assert not made_by_a_dead_process(name)


def test_only_the_k8s_io_cgroups_made_since_the_start_are_removed(tmp_path: Path) -> None:
    machines = tmp_path / "pids" / "k8s.io"
    machines.mkdir(parents=True)
    before = k8s_io_cgroups(tmp_path)
    made = [tmp_path / "memory" / "k8s.io", tmp_path / "cpu" / "k8s.io"]
    for cgroup in made:
        cgroup.mkdir(parents=True)
    in_use = tmp_path / "cpu" / "k8s.io" / "a-container"
    in_use.mkdir()
    (in_use / "cgroup.procs").write_text("4242\n")  # rmdir refuses it, as for a live one

    remove_cgroups_made_since(before, tmp_path, wait_seconds=0)

    assert machines.is_dir(), "a k8s.io cgroup the node did not make stays, empty or not"
    assert not made[0].exists()
    assert in_use.is_dir(), "a cgroup still in use stays (rmdir refuses it)"


def test_the_containers_cgroups_the_node_left_under_a_k8s_io_there_before_go(
    tmp_path: Path,
) -> None:
    """A node stopped earlier may have left ``k8s.io`` behind: the next node's containers
    are below it, and their empty cgroups go when it stops, though ``k8s.io`` stays."""
    earlier = tmp_path / "memory" / "k8s.io" / "an-earlier-container"
    earlier.mkdir(parents=True)
    before = k8s_io_cgroups(tmp_path)
    sandbox = tmp_path / "memory" / "k8s.io" / "a-sandbox"
    (sandbox / "nested").mkdir(parents=True)

    remove_cgroups_made_since(before, tmp_path, wait_seconds=0)

    assert k8s_io_cgroups(tmp_path) == before


def test_the_k8s_io_cgroup_of_a_cgroup_v2_machine_counts_too(tmp_path: Path) -> None:
    (tmp_path / "k8s.io").mkdir()
    (tmp_path / "memory" / "k8s.io").mkdir(parents=True)
    assert k8s_io_cgroups(tmp_path) == {tmp_path / "k8s.io", tmp_path / "memory" / "k8s.io"}
