"""The API's connection limits, on a real aiohttp server on loopback: slow headers are cut
off, over-long ones refused without being quoted, connections capped, bad HTTP answered as
problem+json."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from session_operator.api.connections import MAX_HEADER_BYTES, ConnectionCount
from session_operator.api.server import HANDLER_OPTIONS, GuardedSite, create_app


@dataclass
class Served:
    port: int
    count: ConnectionCount


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    runner = web.AppRunner(create_app(lambda: True), **HANDLER_OPTIONS)
    await runner.setup()
    count = ConnectionCount(limit=3)
    site = GuardedSite(runner, "127.0.0.1", 0, None, count, header_timeout=0.5)
    await site.start()
    try:
        yield Served(site.port, count)
    finally:
        await runner.cleanup()


async def exchange(
    port: int, request: bytes, *, wait: float = 5.0, source: str = "127.0.0.1"
) -> bytes:
    """Send *request* from the loopback address *source* and read until the server closes
    the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def problem(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower()
    document: dict[str, object] = json.loads(body)
    return status, document


async def test_a_well_formed_request_with_a_body_then_another_on_the_same_connection(
    served: Served,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    body = b"\r\n\r\n" * 3  # body bytes that look like the end of headers
    writer.write(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    answers = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answers.startswith(b"HTTP/1.1 405")
    assert b"HTTP/1.1 200" in answers


async def test_headers_that_do_not_arrive_in_time_close_the_connection(served: Served) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await exchange(served.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
    assert answer == b""
    assert 0.4 < loop.time() - started < 3


async def test_over_long_headers_are_431_and_not_quoted(served: Served) -> None:
    secret = b"s3cr3t" * (MAX_HEADER_BYTES // 6 + 1)
    request = b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer " + secret + b"\r\n\r\n"
    answer = await exchange(served.port, request)
    status, document = problem(answer)
    assert status == 431
    assert document["title"] == "Request Header Fields Too Large"
    assert b"s3cr3t" not in answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header Without Colon s3cr3t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer s3cr3t\x00\r\n\r\n",
    ],
)
async def test_bad_http_is_a_problem_400_that_quotes_nothing(
    served: Served, request_bytes: bytes
) -> None:
    answer = await exchange(served.port, request_bytes)
    status, document = problem(answer)
    assert status == 400
    assert document["detail"] == "the request is not valid HTTP"
    assert b"s3cr3t" not in answer
    assert b"GARBAGE" not in answer


async def test_connections_beyond_the_cap_are_refused_with_503(served: Served) -> None:
    held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
    try:
        await asyncio.sleep(0.05)
        assert served.count.open == 3
        status, document = problem(await exchange(served.port, b""))
        assert status == 503
        assert "too many connections" in str(document["detail"])
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.1)
    assert served.count.open == 0
    ok = await exchange(
        served.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200")


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


async def hold(port: int, source: str, count: int) -> list[asyncio.StreamWriter]:
    """*count* idle connections from *source*, as a caller that holds them would."""
    held = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        held.append(writer)
    await asyncio.sleep(0.05)
    return held


async def test_a_source_holding_every_connection_makes_room_for_another_source(
    served: Served,
) -> None:
    held = await hold(served.port, "127.0.0.2", 3)
    try:
        assert served.count.held_by("127.0.0.2") == 3
        answer = await exchange(served.port, HEALTHZ, source="127.0.0.3")
        assert answer.startswith(b"HTTP/1.1 200")
        assert served.count.held_by("127.0.0.2") == 2  # its oldest was closed
        held += await hold(served.port, "127.0.0.3", 1)
        # The heaviest source itself gains nothing by asking for more.
        status, _ = problem(await exchange(served.port, b"", source="127.0.0.2"))
        assert status == 503
        assert served.count.held_by("127.0.0.3") == 1
    finally:
        for writer in held:
            writer.close()


async def test_one_source_holds_at_most_its_share() -> None:
    runner = web.AppRunner(create_app(lambda: True), **HANDLER_OPTIONS)
    await runner.setup()
    count = ConnectionCount(limit=100, per_source=2)
    site = GuardedSite(runner, "127.0.0.1", 0, None, count)
    await site.start()
    held = await hold(site.port, "127.0.0.2", 2)
    try:
        status, document = problem(await exchange(site.port, b"", source="127.0.0.2"))
        assert status == 503
        assert "too many connections" in str(document["detail"])
        assert (await exchange(site.port, HEALTHZ, source="127.0.0.3")).startswith(b"HTTP/1.1 200")
    finally:
        for writer in held:
            writer.close()
        await runner.cleanup()


async def test_a_chunked_request_is_refused_and_the_connection_closed(served: Served) -> None:
    chunked = (
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + b"X-Long: " + b"y" * 40000 + b"\r\n\r\n"
    )
    status, document = problem(await exchange(served.port, chunked))
    assert status == 411
    assert "Content-Length" in str(document["detail"])


def test_idle_keep_alive_connections_are_closed_within_a_minute() -> None:
    assert HANDLER_OPTIONS["keepalive_timeout"] <= 60
