"""CPU seconds and resident memory of processes, read from ``/proc`` (Linux).

CPU is ``utime + stime`` of ``/proc/PID/stat`` (the process's own threads, not its
children). Memory is the peak resident set of the window: a :class:`CostMeter` resets the
kernel's high-water mark (``echo 5 > /proc/PID/clear_refs``) as the window opens and reads
``VmHWM`` of ``/proc/PID/status`` as it closes, so a peak between two samples is not missed.
Where the reset is refused, it falls back to the largest ``VmRSS`` sampled every 0.25 s, and
says so (:attr:`ProcessCost.peak`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

MIB = 1024 * 1024
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds *pid* has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of *pid* in bytes: ``VmRSS`` (resident now) or ``VmHWM`` (its peak)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(pid: int) -> bool:
    """Reset the peak resident set (``VmHWM``) of *pid* to its current one; False when the
    kernel refuses (another user's process, an old kernel)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ProcessCost:
    """One process over one window: CPU used, and memory at the end and at its peak."""

    cpu_seconds: float
    wall_seconds: float
    rss_end: int
    rss_max: int
    """The peak resident set of the window: ``VmHWM`` after a reset, or (see :attr:`peak`)
    the largest ``VmRSS`` sampled."""
    peak: str = "VmHWM"
    """How :attr:`rss_max` was read: ``VmHWM``, or ``sampled`` where no reset was allowed."""

    @property
    def core_share(self) -> float:
        """CPU used as a fraction of one core (0.25 = 25 % of a core)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | str]:
        """The figures for the JSON report (memory in MiB)."""
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "core_percent": round(100 * self.core_share, 2),
            "rss_end_mib": round(self.rss_end / MIB, 1),
            "rss_max_mib": round(self.rss_max / MIB, 1),
            "rss_max_is": self.peak,
        }


class CostMeter:
    """Measures the processes in *pids* (name → pid) between ``__aenter__`` and ``__aexit__``."""

    def __init__(self, pids: Mapping[str, int], sample_every: float = 0.25) -> None:
        self._pids = dict(pids)
        self._sample_every = sample_every
        self._cpu_start: dict[str, float] = {}
        self._rss_max: dict[str, int] = {}
        self._peak_reset: dict[str, bool] = {}
        self._started = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self.result: dict[str, ProcessCost] = {}

    async def __aenter__(self) -> CostMeter:
        self._started = time.monotonic()
        self._cpu_start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._peak_reset = {name: reset_peak(pid) for name, pid in self._pids.items()}
        self._rss_max = {name: rss_bytes(pid) for name, pid in self._pids.items()}
        self._sampler = asyncio.create_task(self._sample())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        wall = time.monotonic() - self._started
        for name, pid in self._pids.items():
            rss = rss_bytes(pid)
            reset = self._peak_reset[name]
            self.result[name] = ProcessCost(
                cpu_seconds=cpu_seconds(pid) - self._cpu_start[name],
                wall_seconds=wall,
                rss_end=rss,
                rss_max=rss_bytes(pid, "VmHWM") if reset else max(rss, self._rss_max[name]),
                peak="VmHWM" if reset else "sampled",
            )

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self._sample_every)
            for name, pid in self._pids.items():
                if self._peak_reset[name]:
                    continue
                self._rss_max[name] = max(self._rss_max[name], rss_bytes(pid))
