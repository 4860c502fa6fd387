"""Where the apiserver's CPU goes during a window: its own Go profile (``/debug/pprof``,
served to the admin), summarised by ``go tool pprof -top``. ``make bench
BENCH_ARGS="--field --profile"`` takes one in the middle of each sustain window and keeps
the ``.pprof`` files beside the run's JSON, for ``go tool pprof -http`` or ``-top`` later.
"""

from __future__ import annotations

import asyncio
import shutil
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
