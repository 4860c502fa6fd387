"""Where the field tier's processes run: the control plane on CPUs of its own.

In a cluster the apiserver and etcd run on control-plane nodes, the operator's replicas and
its clients elsewhere. On one machine they share its cores, and every bit of CPU a replica
or a client uses is taken from the apiserver. With ``--pin-control-plane`` the control
plane (kube-apiserver, etcd, kube-controller-manager) is pinned to the first half of the
CPUs, and the bench process, its clients and the replicas it starts to the other half: the
raw ceiling (measured before any replica runs) and the sustain steps then measure the same
apiserver. On a small machine each half is small: on 2 cores, one core each.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")


def pin_apart(control_plane_pids: Iterable[int]) -> str | None:
    """Pin every thread of *control_plane_pids* to the first half of this process's CPUs,
    and this process (whose children inherit it) to the rest; what was done, for the
    report, or ``None`` where there is a single CPU to share."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    control, rest = set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2 :])
    for pid in control_plane_pids:
        _pin_threads(pid, control)
    _pin_threads(os.getpid(), rest)
    return (
        f"the control plane ({', '.join(CONTROL_PLANE)}) pinned to CPU {_listed(control)}, "
        f"the replicas and the clients to CPU {_listed(rest)}, as on a cluster's separate "
        "nodes; the raw ceiling is that of the control plane's CPUs"
    )


def _pin_threads(pid: int, cpus: set[int]) -> None:
    # Threads started later inherit the affinity of the thread that starts them.
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            continue  # the thread ended meanwhile


def _listed(cpus: set[int]) -> str:
    return ", ".join(str(cpu) for cpu in sorted(cpus))
