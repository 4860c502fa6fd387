"""Carry TCP from listeners inside the node's network namespace to the machine's loopback.

The apiserver listens on 127.0.0.1 of the machine only. The node's kubelet (on its own
namespace's loopback) and its Pods (through the bridge's address) reach it through this
process: it makes its listening sockets inside the node's namespace, goes back to the
machine's, and connects every accepted connection to the target port on 127.0.0.1. No
address outside loopback and the node's namespace is involved (docs/node.md).

Run as ``python -m harness.loopback_bridge NETNS_PATH TARGET_PORT HOST:PORT...``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from harness.netns import enter_network_namespace

_CHUNK = 65536


def listen_inside(netns: Path, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets bound to *addresses* inside *netns*; the caller stays in (or
    returns to) its own namespace."""
    own_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        enter_network_namespace(netns)
        listeners = []
        for host, port in addresses:
            listener = socket.create_server((host, port), reuse_port=False)
            listener.setblocking(False)
            listeners.append(listener)
    finally:
        enter_network_namespace(Path(f"/proc/self/fd/{own_fd}"))
        os.close(own_fd)
    return listeners


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve(listeners: list[socket.socket], target_port: int) -> None:
    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    servers = [await asyncio.start_server(carry, sock=listener) for listener in listeners]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str]) -> int:
    """Entry point: NETNS_PATH TARGET_PORT HOST:PORT..."""
    netns, target, *listen = argv
    addresses = [(host, int(port)) for host, port in (item.rsplit(":", 1) for item in listen)]
    listeners = listen_inside(Path(netns), addresses)
    print(f"listening in {netns} on {listen}, carrying to 127.0.0.1:{target}", flush=True)
    asyncio.run(_serve(listeners, int(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
