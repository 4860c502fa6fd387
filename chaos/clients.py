"""The session clients of the fault harness: a process of their own, beating with the
project's own :class:`~session_operator.heartbeat_client.HeartbeatClient`.

The harness drives it through stdin, one JSON command per line:

* ``{"op": "beat", "session": "ns/name"}``: keep the session alive (``keep_alive``);
* ``{"op": "drop", "session": "ns/name"}``: the client dies: it stops beating at once;
* ``{"op": "burst", "session": "ns/name", "clients": 20, "seconds": 8}``: many clients beat
  the same session at once, as fast as they are answered;
* ``{"op": "quit"}``.

It answers on stdout, one JSON line per fact: ``dropped`` (with the time the beating
stopped), ``ended`` (the API said 410 or 404 to a client that was still beating),
``burst`` (accepted and refused beats by status).

    python -m chaos.clients --url http://127.0.0.1:PORT --token-file TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from session_operator.heartbeat_client import HeartbeatClient, HeartbeatFailed


class Clients:
    """One keep-alive task per session, started and dropped on command."""

    def __init__(self, url: str, token_file: Path) -> None:
        self._url = url
        self._token_file = token_file
        self._beating: dict[str, tuple[HeartbeatClient, asyncio.Task[None]]] = {}
        self._bursts: set[asyncio.Task[None]] = set()

    async def handle(self, command: dict[str, Any]) -> None:
        """Carry out one command."""
        op, session = command["op"], command.get("session", "")
        if op == "beat":
            self._beat(session)
        elif op == "drop":
            await self._drop(session)
        elif op == "burst":
            burst = asyncio.create_task(
                self._burst(session, command["clients"], command["seconds"])
            )
            self._bursts.add(burst)
            burst.add_done_callback(self._bursts.discard)
        else:
            raise ValueError(f"unknown command {op!r}")

    async def close(self) -> None:
        """Stop every client."""
        for session in list(self._beating):
            await self._drop(session, report=False)

    def _beat(self, session: str) -> None:
        client = HeartbeatClient(self._url, session, token_file=self._token_file, allow_http=True)
        self._beating[session] = (client, asyncio.create_task(self._keep_alive(client)))

    async def _keep_alive(self, client: HeartbeatClient) -> None:
        ended = await client.keep_alive()
        emit(
            event="ended",
            session=client.session,
            status=ended.status,
            stop_reason=ended.stop_reason,
            detail=ended.detail,
        )

    async def _drop(self, session: str, report: bool = True) -> None:
        client, task = self._beating.pop(session)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
        if report:
            emit(event="dropped", session=session)

    async def _burst(self, session: str, clients: int, seconds: float) -> None:
        outcomes: Counter[str] = Counter()
        until = time.monotonic() + seconds

        async def hammer() -> None:
            async with HeartbeatClient(
                self._url, session, token_file=self._token_file, allow_http=True
            ) as one:
                while time.monotonic() < until:
                    try:
                        await one.beat()
                        outcomes["200"] += 1
                    except HeartbeatFailed as failure:
                        outcomes[str(failure.status or "unreached")] += 1
                        await asyncio.sleep(0.05)

        await asyncio.gather(*(hammer() for _ in range(clients)))
        emit(event="burst", session=session, outcomes=dict(outcomes))


def emit(**fact: Any) -> None:
    """Write one fact as a JSON line on stdout, stamped with the wall-clock time."""
    print(json.dumps({"at": time.time(), **fact}), flush=True)


async def serve(url: str, token_file: Path) -> None:
    """Read commands from stdin until ``quit`` or end of input."""
    clients = Clients(url, token_file)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["op"] == "quit":
                break
            await clients.handle(command)
    finally:
        await clients.close()


def main() -> None:
    """Entry point of ``python -m chaos.clients``."""
    parser = argparse.ArgumentParser(prog="python -m chaos.clients", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL of the heartbeat API")
    parser.add_argument("--token-file", required=True, type=Path, help="bearer token file")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.url, arguments.token_file))


if __name__ == "__main__":
    main()
