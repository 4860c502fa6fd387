"""Where the CPU goes. The apiserver's: its own Go profile (``/debug/pprof``, served to
the admin), summarised by ``go tool pprof -top``; ``make bench BENCH_ARGS="--field
--profile"`` takes one in the middle of each sustain window and keeps the ``.pprof`` files
beside the run's JSON, for ``go tool pprof -http`` or ``-top`` later. The replicas': py-spy
samples each over the same quarter of each sustain window (``<stamp>-<replica>-<N>.txt``),
the standby from before the leader is killed until every due lease is seen stopped
(``<stamp>-<replica>-failover.txt``), and each replica from its restart until the
restart's window ends (``<stamp>-<replica>-restart.txt``), and keeps the stacks in
py-spy's collapsed form, for ``flamegraph.pl``.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import signal
import sys
from pathlib import Path

import aiohttp

from harness.kube import ApiServer

TOP_NODES = 30


async def apiserver_profile(api: ApiServer, seconds: int, out: Path) -> bool:
    """Profile the apiserver's CPU for *seconds* into *out*; False if it refused."""
    path = f"/debug/pprof/profile?seconds={seconds}"
    timeout = aiohttp.ClientTimeout(total=seconds + 30)
    async with api.http.get(api.server + path, timeout=timeout) as response:
        if response.status != 200:
            return False
        data = await response.read()
    await asyncio.to_thread(out.write_bytes, data)
    return True


async def top_functions(out: Path) -> str:
    """The profile in *out* summarised: the functions with the largest cumulative CPU (a
    handler's share includes what it calls), as ``go tool pprof -top -cum`` prints them."""
    go = shutil.which("go")
    if go is None:
        return f"profile in {out}; no go on PATH to summarise it"
    summary = await asyncio.create_subprocess_exec(
        go, "tool", "pprof", "-top", "-cum", f"-nodecount={TOP_NODES}", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    text, _ = await summary.communicate()
    return text.decode(errors="replace")


PY_SPY = Path(sys.executable).with_name("py-spy")
SAMPLES_PER_SECOND = 50
TOP_FUNCTIONS = 25


class ReplicaProfiles:
    """py-spy on replica processes, each from when :meth:`start` is told of it until
    :meth:`stop`; their stacks go to ``<prefix>-<replica>-<phase>.txt``."""

    def __init__(self, prefix: Path, phase: str) -> None:
        self._prefix = prefix
        self._phase = phase
        self._running: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}

    async def start(self, replica: str, pid: int) -> None:
        """Sample *replica* (process *pid*) from now on, if py-spy is installed."""
        if not PY_SPY.exists():
            return
        out = Path(f"{self._prefix}-{replica}-{self._phase}.txt")
        process = await asyncio.create_subprocess_exec(
            str(PY_SPY), "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND),
            "--format", "raw", "--output", str(out), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._running[replica] = (process, out)

    async def stop(self) -> dict[str, str]:
        """Stop sampling; each replica's busiest functions (:func:`busiest`), as text."""
        if not PY_SPY.exists():
            return {"replicas": f"no py-spy at {PY_SPY}: make install adds it"}
        summaries: dict[str, str] = {}
        for replica, (process, out) in self._running.items():
            if process.returncode is None:
                process.send_signal(signal.SIGINT)  # py-spy writes what it has, then ends
            await process.wait()
            if out.exists():
                summaries[replica] = render_busiest(busiest(out.read_text()), out)
            else:
                summaries[replica] = f"no py-spy profile of {replica}"
        return summaries


def busiest(collapsed: str, count: int = TOP_FUNCTIONS) -> list[tuple[float, int, str]]:
    """From py-spy's collapsed stacks (``frame;frame;... samples`` per line), the *count*
    functions in the most samples, counting each once per stack (a caller's share includes
    what it calls): (share of all samples, samples, ``function (file)``)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        total += int(samples)
        for function in {_function(frame) for frame in stack.split(";")}:
            inclusive[function] += int(samples)
    return [(n / total, n, function) for function, n in inclusive.most_common(count)]


def render_busiest(rows: list[tuple[float, int, str]], out: Path) -> str:
    """*rows* as lines (``share  samples  function``), naming where the stacks are."""
    lines = [f"{share:6.1%} {samples:7,d}  {function}" for share, samples, function in rows]
    return "\n".join([f"stacks in {out}", *lines]) + "\n"


def _function(frame: str) -> str:
    """``name (path/to/file.py:12)`` as ``name (file.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    file = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name
