"""``python -m bench.runtime.clients --kubernetes-path DIR``: one Session GET from asyncio,
through kubernetes_asyncio (the operator's ``k8s/rest.py``) and through the synchronous
``kubernetes`` client in threads (docs/decisions/0004-kubernetes-asyncio.md).

The synchronous client is not a dependency of the project: install it apart
(``pip install --target DIR kubernetes``). *DIR* goes to the end of ``sys.path``, so the
project's own aiohttp and pydantic still win. CPU is this process's ``time.process_time``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.context import IDLER_LEASE, SessionName
from bench.load import bounded_gather
from bench.population import session_body
from bench.runtime.run import NAMESPACE, control_plane
from harness.kube import ApiServer
from harness.progress import Progress
from harness.table import render_table
from session_operator.k8s.connection import connect
from session_operator.k8s.rest import Rest
from session_operator.models import GROUP, PLURAL, VERSION, sessions_path

NAME = "one"


async def timed(
    label: str, call: Callable[[int], Awaitable[object]], calls: int, concurrency: int
) -> list[str]:
    """*calls* calls at *concurrency*: a table row (calls/s, CPU ms per call, threads)."""
    cpu, started = time.process_time(), time.monotonic()
    await bounded_gather(range(calls), call, concurrency)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    rate, per_call = calls / wall, 1000 * cpu / calls
    return [label, f"{rate:,.0f}", f"{per_call:.2f}", str(threading.active_count())]


async def measure(plane: Any, calls: int, concurrency: int) -> str:
    """The rows: kubernetes_asyncio first, then the synchronous client in two pools."""
    from kubernetes import client as sync_client  # type: ignore[import-not-found]
    from kubernetes import config as sync_config

    async with ApiServer(plane.server, plane.admin_token, plane.ca_file) as api:
        await api.expect("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        body = session_body(SessionName(NAMESPACE, NAME), IDLER_LEASE)
        await api.expect("POST", sessions_path(NAMESPACE), body)
    api_client = await connect(str(plane.kubeconfig))
    rest = Rest(api_client)
    path = sessions_path(NAMESPACE, NAME)
    rows = [await timed("kubernetes_asyncio, one loop", lambda _: rest.request("GET", path),
                        calls, concurrency)]  # fmt: skip
    sync_config.load_kube_config(config_file=str(plane.kubeconfig))
    configuration = sync_client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = concurrency
    objects = sync_client.CustomObjectsApi(sync_client.ApiClient(configuration))

    def get() -> object:
        return objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)

    loop = asyncio.get_running_loop()
    default = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's, asyncio.to_thread's
    for workers in (default, concurrency):
        with ThreadPoolExecutor(workers) as pool:
            name = f"kubernetes (sync), {workers} threads"
            rows.append(await timed(name, lambda _: loop.run_in_executor(pool, get),
                                    calls, concurrency))  # fmt: skip
    await api_client.close()
    headers = ["client", "calls/s", "CPU ms/call", "threads"]
    return f"{calls:,} GETs of one Session, {concurrency} at a time\n\n" + render_table(
        rows, headers
    )


def main() -> int:
    """Entry point; prints the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime.clients", description=__doc__)
    parser.add_argument("--kubernetes-path", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    sys.path.append(str(args.kubernetes_path))
    progress = Progress({"control plane": 8.0, "calls": 30.0})
    with control_plane(progress) as (plane, _):
        progress.start("calls", "GETs through each client")
        table = asyncio.run(measure(plane, args.calls, args.concurrency))
    progress.finish()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
