"""The machine-wide kernel settings a kubelet changes, read before the node starts and
written back when it stops (docs/node.md, "Kernel settings").

A kubelet without ``protectKernelDefaults`` sets these when it starts (``setupKernelTunables``
of Kubernetes' container manager). No namespace contains them: ``kernel.panic_on_oops=1``
with ``kernel.panic=10`` reboots the machine on the next kernel oops, long after the node
is gone, unless the harness writes back what it found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

KUBELET_KERNEL_SETTINGS: Mapping[str, int] = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1_000_000,
    "kernel/keys/root_maxbytes": 25_000_000,
}
"""Each setting (its path under /proc/sys) and the value the kubelet gives it: the
``desiredState`` of ``pkg/kubelet/cm/container_manager_linux.go``, Kubernetes v1.37."""
SYSCTL_ROOT = Path("/proc/sys")


def read_kernel_settings(root: Path = SYSCTL_ROOT) -> dict[str, str]:
    """The values now of the settings the kubelet changes (those this kernel has)."""
    found: dict[str, str] = {}
    for name in KUBELET_KERNEL_SETTINGS:
        try:
            found[name] = (root / name).read_text().strip()
        except OSError:
            continue
    return found


def settings_to_restore(before: Mapping[str, str], now: Mapping[str, str]) -> dict[str, str]:
    """What to write back once the node is gone: the value of *before* of each setting that
    differs now and holds the kubelet's value. A value anyone else wrote meanwhile stays,
    and so does one a node started later found already changed."""
    return {
        name: value
        for name, value in before.items()
        if name in now
        and now[name] != value
        and now[name] == str(KUBELET_KERNEL_SETTINGS.get(name))
    }


def restore_kernel_settings(before: Mapping[str, str], root: Path = SYSCTL_ROOT) -> None:
    """Write back the settings of *before* that a kubelet changed since (see
    :func:`settings_to_restore`)."""
    for name, value in settings_to_restore(before, read_kernel_settings(root)).items():
        (root / name).write_text(f"{value}\n")


def record_kernel_settings(record: Path, root: Path = SYSCTL_ROOT) -> dict[str, str]:
    """Read the settings now, and keep them in the file *record* too (0600), so that the
    next node's start can write them back should this harness be killed outright."""
    found = read_kernel_settings(root)
    record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(found, file)
    return found


def restore_recorded_kernel_settings(record: Path, root: Path = SYSCTL_ROOT) -> None:
    """:func:`restore_kernel_settings` from the file *record*, then remove it; nothing if
    there is none."""
    try:
        before = json.loads(record.read_text())
    except (OSError, ValueError):
        record.unlink(missing_ok=True)
        return
    restore_kernel_settings(before, root)
    record.unlink()
