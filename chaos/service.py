"""A loopback stand-in for the operator's Kubernetes Service: one port, every replica behind it.

Connections go round-robin to the replicas' ports; a replica that refuses (killed, not yet
restarted) is skipped, as kube-proxy skips an endpoint that is not ready. A hook can be set
that sees each chunk of a request on its way to a replica: the harness uses it to kill the
leader while one of its heartbeats is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence

from harness.cluster import free_port

RequestHook = Callable[[int], None]
"""Called with a replica's port when request bytes are about to reach it."""


class ServiceProxy:
    """Forward TCP connections from one loopback port to the first replica that accepts."""

    def __init__(self, backends: Sequence[int]) -> None:
        self.port = free_port()
        self._backends = list(backends)
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self.on_request: RequestHook | None = None

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on :attr:`port`."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._turn)
        for offset in range(len(self._backends)):
            port = self._backends[(first + offset) % len(self._backends)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(
                self._pipe(reader, upstream_writer, port),
                self._pipe(upstream_reader, writer, None),
            )
            return
        writer.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, port: int | None
    ) -> None:
        try:
            while chunk := await source.read(65536):
                if port is not None and self.on_request is not None:
                    self.on_request(port)
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                sink.close()
