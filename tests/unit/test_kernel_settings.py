"""A node leaves the machine's kernel settings as it found them: what the kubelet changed
goes back, what anyone else changed stays (docs/node.md, "Kernel settings")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.kernel_settings import (
    KUBELET_KERNEL_SETTINGS,
    read_kernel_settings,
    record_kernel_settings,
    restore_kernel_settings,
    restore_recorded_kernel_settings,
    settings_to_restore,
)

pytestmark = pytest.mark.unit

FOUND = {"kernel/panic": "1", "kernel/panic_on_oops": "0", "vm/overcommit_memory": "0"}
AS_THE_KUBELET_LEFT_THEM = {
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "vm/overcommit_memory": "1",
}


def sysctl_tree(root: Path, values: dict[str, str]) -> Path:
    """A stand-in for /proc/sys holding *values*."""
    for name, value in values.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{value}\n")
    return root


def test_the_settings_the_kubelet_changed_go_back_to_what_the_node_found() -> None:
    assert settings_to_restore(FOUND, AS_THE_KUBELET_LEFT_THEM) == FOUND


def test_settings_the_kubelet_found_as_it_wants_them_are_not_written() -> None:
    assert settings_to_restore(AS_THE_KUBELET_LEFT_THEM, AS_THE_KUBELET_LEFT_THEM) == {}


def test_a_value_someone_else_set_while_the_node_ran_stays() -> None:
    now = {**AS_THE_KUBELET_LEFT_THEM, "kernel/panic": "5"}
    assert settings_to_restore(FOUND, now) == {
        "kernel/panic_on_oops": "0",
        "vm/overcommit_memory": "0",
    }


def test_the_kubelet_changes_the_settings_that_reboot_a_machine_on_an_oops() -> None:
    assert KUBELET_KERNEL_SETTINGS["kernel/panic_on_oops"] == 1
    assert KUBELET_KERNEL_SETTINGS["kernel/panic"] == 10
    assert KUBELET_KERNEL_SETTINGS["vm/overcommit_memory"] == 1


def test_reading_skips_settings_this_kernel_does_not_have(tmp_path: Path) -> None:
    root = sysctl_tree(tmp_path, FOUND)
    assert read_kernel_settings(root) == FOUND


def test_restoring_writes_back_only_what_the_kubelet_changed(tmp_path: Path) -> None:
    root = sysctl_tree(tmp_path, {**AS_THE_KUBELET_LEFT_THEM, "kernel/panic": "5"})
    restore_kernel_settings(FOUND, root)
    assert read_kernel_settings(root) == {**FOUND, "kernel/panic": "5"}


def test_a_record_kept_for_a_killed_harness_is_private_and_restores_then_goes(
    tmp_path: Path,
) -> None:
    root = sysctl_tree(tmp_path / "sys", FOUND)
    record = tmp_path / "records" / "xg2g-node-1-2.json"
    assert record_kernel_settings(record, root) == FOUND
    assert record.stat().st_mode & 0o777 == 0o600
    assert json.loads(record.read_text()) == FOUND
    sysctl_tree(root, AS_THE_KUBELET_LEFT_THEM)

    restore_recorded_kernel_settings(record, root)

    assert read_kernel_settings(root) == FOUND
    assert not record.exists()
