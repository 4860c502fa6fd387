"""How the harness runs the daemons it starts: logged to a file, in a session of their own,
dying with their parent, stopped with SIGTERM then SIGKILL, and what they mounted undone.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1
_MNT_DETACH = 2


def spawn(
    argv: Sequence[str],
    log: BinaryIO,
    env: Mapping[str, str] | None = None,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start *argv* with its output in *log*; it gets SIGKILL should this process die.
    *before_exec* runs in the child first (entering a network namespace, say)."""

    def prepare() -> None:
        _die_with_parent()
        if before_exec is not None:
            before_exec()

    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=prepare,
    )


def terminate(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM *process*, then SIGKILL if it is still running after *grace* seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def exit_on_sigterm() -> None:
    """Turn a plain SIGTERM into SystemExit, so context managers and fixtures stop what
    they started; a handler someone else installed is kept."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_system_exit)


def unmount_under(directory: Path) -> None:
    """Detach every mount at or below *directory*, deepest first (what a daemon killed
    outright, or a failed debootstrap, leaves behind before its directory is removed)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for point in sorted(set(mounts_under(directory)), key=len, reverse=True):
        libc.umount2(point.encode(), _MNT_DETACH)


def remove_unmounted_tree(directory: Path) -> None:
    """Remove *directory* and everything in it, unless something is still mounted at or
    below it: then say so in one line and leave it (rmtree descends into a mounted file
    system, and would delete what is not the harness's: a Pod's hostPath, say)."""
    still_mounted = mounts_under(directory)
    if still_mounted:
        more = f" and {len(still_mounted) - 1} more" if len(still_mounted) > 1 else ""
        print(
            f"not removing {directory}: {still_mounted[0]}{more} still mounted under it",
            file=sys.stderr,
            flush=True,
        )
        return
    shutil.rmtree(directory, ignore_errors=True)


def mounts_under(directory: Path) -> list[str]:
    """The mount points at or below *directory* in this process's mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return mount_points_in(mountinfo.read(), os.path.realpath(directory))


def mount_points_in(mountinfo: str, root: str) -> list[str]:
    """The mount points of *mountinfo* (the text of ``/proc/self/mountinfo``) at or below
    the resolved path *root*, in the order listed."""
    points = [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]
    return [point for point in points if point == root or point.startswith(root + "/")]


def process_start_time(pid: int) -> int | None:
    """When process *pid* started (clock ticks after boot); None when there is none. A PID
    is reused once its process is gone; the PID with its start time names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return start_time_in_stat(stat)


def own_start_time() -> int:
    """When this process started, as :func:`process_start_time` counts."""
    return start_time_in_stat(Path("/proc/self/stat").read_text())


def start_time_in_stat(stat: str) -> int:
    """The start time (field 22) of a ``/proc/PID/stat`` line."""
    # The command name (field 2) may hold spaces and parentheses: count after its last ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def log_excerpt(path: Path, head: int = 15, tail: int = 25) -> str:
    """The start and the end of the log at *path*, for an error message."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    if len(lines) <= head + tail:
        shown = lines
    else:
        shown = [*lines[:head], f"... ({len(lines) - head - tail} lines) ...", *lines[-tail:]]
    return f"--- {path} ---\n" + "\n".join(shown)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes.
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
