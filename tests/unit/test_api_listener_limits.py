"""How many connections each listener holds: the API port as many as the setting
``apiMaxConnections`` says, the probe port its own fixed number."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from harness.cluster import free_port
from session_operator.api.connections import MAX_CONNECTIONS
from session_operator.api.server import GuardedSite, start_server
from session_operator.config import load_settings

pytestmark = pytest.mark.unit


def site_of(runner: web.AppRunner) -> GuardedSite:
    [site] = runner.sites
    assert isinstance(site, GuardedSite)
    return site


async def test_the_api_port_holds_as_many_connections_as_the_setting_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api_port, probe_port = free_port(), free_port()
    monkeypatch.setenv("XG2G_SESSION_API_HOST", "127.0.0.1")
    monkeypatch.setenv("XG2G_SESSION_API_PORT", str(api_port))
    monkeypatch.setenv("XG2G_SESSION_PROBE_PORT", str(probe_port))
    monkeypatch.setenv("XG2G_SESSION_API_MAX_CONNECTIONS", "64")
    runners = await start_server(lambda: True, load_settings())
    held: list[asyncio.StreamWriter] = []
    try:
        api, probes = (site_of(runner) for runner in runners)
        assert (api.count.limit, probes.count.limit) == (64, MAX_CONNECTIONS)
        for _ in range(64):
            _, writer = await asyncio.open_connection("127.0.0.1", api_port)
            held.append(writer)
        await asyncio.sleep(0.1)
        assert api.count.open == 64
        # One source holds them all: its next connection is refused, nobody's is evicted.
        reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
        held.append(writer)
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 503 ")
    finally:
        for writer in held:
            writer.close()
        for runner in runners:
            await runner.cleanup()
