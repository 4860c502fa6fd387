"""Where the server serves what: /metrics on the API port, or on a port of its own."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from harness.cluster import free_port
from session_operator.api.server import start_server
from session_operator.config import load_settings


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def get(url: str) -> int:
    return await asyncio.to_thread(status_of, url)


@pytest.mark.parametrize("own_port", [False, True])
async def test_metrics_are_served_on_the_api_port_or_only_on_their_own(
    monkeypatch: pytest.MonkeyPatch, own_port: bool
) -> None:
    api_port, metrics_port = free_port(), free_port()
    monkeypatch.setenv("XG2G_SESSION_API_HOST", "127.0.0.1")
    monkeypatch.setenv("XG2G_SESSION_API_PORT", str(api_port))
    if own_port:
        monkeypatch.setenv("XG2G_SESSION_METRICS_PORT", str(metrics_port))
    runners = await start_server(lambda: True, load_settings())
    try:
        api = f"http://127.0.0.1:{api_port}"
        assert await get(f"{api}/healthz") == 200
        assert await get(f"{api}/metrics") == (404 if own_port else 200)
        if own_port:
            assert await get(f"http://127.0.0.1:{metrics_port}/metrics") == 200
            assert await get(f"http://127.0.0.1:{metrics_port}/healthz") == 404
    finally:
        for runner in runners:
            await runner.cleanup()
