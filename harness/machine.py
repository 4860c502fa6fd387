"""What the numbers were measured on: the machine, and the versions of what ran."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata


@dataclass(frozen=True)
class Machine:
    """The machine and software versions a run was measured with."""

    cores: int
    memory_gib: float
    cpu_model: str
    kernel: str
    python: str
    kubernetes: str
    etcd: str
    kopf: str
    load_average_at_start: tuple[float, float, float]

    def describe(self) -> str:
        """One line for the table's header."""
        return (
            f"{self.cores} cores, {self.memory_gib:.0f} GiB, {self.cpu_model}; "
            f"Python {self.python}, Kubernetes {self.kubernetes}, etcd {self.etcd}, "
            f"kopf {self.kopf}; load average at start {self.load_average_at_start[0]:.2f}"
        )

    def as_dict(self) -> dict[str, object]:
        """The fields for the JSON report."""
        return asdict(self)


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    """Total memory from ``/proc/meminfo``, in GiB."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def describe_machine(kubernetes: str, etcd: str) -> Machine:
    """This machine, with the Kubernetes and etcd versions the caller read from the servers."""
    return Machine(
        cores=os.cpu_count() or 0,
        memory_gib=round(memory_gib(), 1),
        cpu_model=cpu_model(),
        kernel=platform.release(),
        python=platform.python_version(),
        kubernetes=kubernetes,
        etcd=etcd,
        kopf=metadata.version("kopf"),
        load_average_at_start=os.getloadavg(),
    )
