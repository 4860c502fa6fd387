"""A one-line progress bar on stderr: the phase, how far the whole run is, time elapsed.

The run is planned as steps with an expected duration each (their weights); a step reports
how far it is with :meth:`Progress.update`. On a terminal the bar redraws in place; into a
file or pipe it writes one line per step, so CI logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO

_WIDTH = 28


class Progress:
    """Progress over a run planned as named steps with expected seconds each."""

    def __init__(self, plan: Mapping[str, float], stream: TextIO = sys.stderr) -> None:
        self._weights = dict(plan)
        self._total = sum(self._weights.values()) or 1.0
        self._finished = 0.0
        self._step = ""
        self._fraction = 0.0
        self._label = ""
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._drawn = 0.0

    def start(self, step: str, label: str = "") -> None:
        """Begin *step* (a key of the plan), shown as *label*."""
        self._close_step()
        self._step = step
        self._fraction = 0.0
        self._label = label or step
        if self._tty:
            self._draw(force=True)
        else:
            print(
                f"[{self._percent():3.0f}%] {self._label}  ({self._elapsed()})", file=self._stream
            )

    def update(self, fraction: float, label: str | None = None) -> None:
        """The current step is *fraction* (0..1) done; optionally change its label."""
        self._fraction = max(0.0, min(1.0, fraction))
        if label is not None:
            self._label = label
        if self._tty:
            self._draw()

    def note(self, message: str) -> None:
        """Print a line above the bar (a warning the reader should see)."""
        if self._tty:
            self._stream.write("\r\033[K")
        print(message, file=self._stream)
        if self._tty:
            self._draw(force=True)

    def finish(self) -> None:
        """End the run: the bar at 100 %, then a newline."""
        self._close_step()
        self._step = ""
        self._label = "done"
        if self._tty:
            self._draw(force=True)
            self._stream.write("\n")
        else:
            print(f"[100%] done  ({self._elapsed()})", file=self._stream)
        self._stream.flush()

    def _close_step(self) -> None:
        if self._step:
            self._finished += self._weights.get(self._step, 0.0)
        self._step = ""
        self._fraction = 0.0

    def _percent(self) -> float:
        current = self._weights.get(self._step, 0.0) * self._fraction
        return min(100.0, 100 * (self._finished + current) / self._total)

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        percent = self._percent()
        filled = int(_WIDTH * percent / 100)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        line = f"[{bar}] {percent:3.0f}%  {self._elapsed()}  {self._label}"
        self._stream.write("\r\033[K" + line[:160])
        self._stream.flush()
