"""Where the server serves what: /metrics on the API port or on a port of its own, the
probes on a port of their own too, the admission webhook only on its own, over TLS, with
bounded bodies."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from session_operator.api import admission
from session_operator.api.admission import AdmissionRoutes, max_review_bytes
from session_operator.api.server import start_server
from session_operator.config import load_settings
from session_operator.runtime import utc_now


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


@pytest.fixture
async def layout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[dict[str, int]]:
    """The server with every listener of its own: API (TLS), probes, webhook (TLS)."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    ports = {"api": free_port(), "probes": free_port(), "webhook": free_port()}
    for variable, value in {
        "API_HOST": "127.0.0.1",
        "API_PORT": str(ports["api"]),
        "PROBE_PORT": str(ports["probes"]),
        "WEBHOOK_PORT": str(ports["webhook"]),
        "TLS_CERT_FILE": str(cert_file),
        "TLS_KEY_FILE": str(key_file),
        "MAX_SESSION_BYTES": "4096",
    }.items():
        monkeypatch.setenv(f"XG2G_SESSION_{variable}", value)
    settings = load_settings()
    routes = AdmissionRoutes(4096, settings.max_hold, utc_now)
    runners = await start_server(lambda: True, settings, None, routes)
    context = ssl.create_default_context(cafile=str(cert_file))
    monkeypatch.setattr(urllib.request, "urlopen", partial(urllib.request.urlopen, context=context))
    try:
        yield ports
    finally:
        for runner in runners:
            await runner.cleanup()


REVIEW = {"kind": "AdmissionReview", "request": {"uid": "u", "object": {"spec": {}}}}


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def post_json(url: str, document: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


async def test_the_probes_and_the_webhook_have_listeners_of_their_own(
    layout: dict[str, int],
) -> None:
    probes = f"http://127.0.0.1:{layout['probes']}"
    assert await get(f"{probes}/healthz") == 200
    assert await get(f"{probes}/readyz") == 200
    assert await get(f"{probes}/metrics") == 404
    assert await get(f"https://127.0.0.1:{layout['api']}/healthz") == 200
    review = json.dumps(REVIEW).encode()
    webhook = f"https://127.0.0.1:{layout['webhook']}/admission/sessions"
    assert await asyncio.to_thread(post, webhook, review) == 200
    on_the_api = f"https://127.0.0.1:{layout['api']}/admission/sessions"
    assert await asyncio.to_thread(post, on_the_api, review) == 404


async def test_the_webhook_reads_two_sessions_worth_of_body_and_no_more(
    layout: dict[str, int],
) -> None:
    webhook = f"https://127.0.0.1:{layout['webhook']}/admission/sessions"
    too_large = b" " * (max_review_bytes(4096) + 1)
    assert await asyncio.to_thread(post, webhook, too_large) == 413  # no review's start
    nested = b"[" * 100_000 + b"]" * 100_000
    assert await asyncio.to_thread(post, webhook, nested) == 413
    deep = b"[" * 5_000 + b"]" * 5_000
    assert await asyncio.to_thread(post, webhook, deep) == 400


async def test_a_review_too_large_to_read_is_refused_with_the_limit_unread(
    layout: dict[str, int],
) -> None:
    webhook = f"https://127.0.0.1:{layout['webhook']}/admission/sessions"
    huge = {
        **REVIEW,
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "object": {"spec": {"template": {"metadata": {"annotations": {"p": "x" * 1_000_000}}}}},
        },
    }
    answer = (await asyncio.to_thread(post_json, webhook, huge))["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert answer["allowed"] is False
    assert "at most 4096 are accepted" in answer["status"]["message"]


async def test_a_withheld_webhook_body_is_given_up_on(
    layout: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(admission, "BODY_DEADLINE_SECONDS", 0.3)
    context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", layout["webhook"], ssl=context, server_hostname="127.0.0.1"
    )
    try:
        writer.write(
            b"POST /admission/sessions HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert answer.startswith(b"HTTP/1.1 400")
        assert b"did not arrive within 0.3s" in answer
    finally:
        writer.close()
