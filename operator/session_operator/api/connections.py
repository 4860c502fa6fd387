"""Limits on the API's connections, ahead of aiohttp's own HTTP parsing.

aiohttp keeps a connection that sends its request headers slowly open for as long as it
likes (slowloris), accepts any number of connections, and answers an over-long header with
a plain-text 400 that quotes the header. Every connection first passes through
:class:`GuardedConnection`, which

* shares the connections fairly among their sources (:class:`ConnectionCount`): one
  source (a Pod, say) may hold at most :data:`MAX_CONNECTIONS_PER_SOURCE`, and once the
  listener holds its limit (on the API port the setting ``apiMaxConnections``), a newcomer
  from a source holding fewer takes the place of the oldest connection of the source that
  holds the most; only a newcomer from the heaviest source itself is refused (503).
  Connections held open by one caller, however many, cannot lock the others out;
* closes a connection whose request headers have not all arrived within
  :data:`HEADER_TIMEOUT_SECONDS` of their first byte;
* answers request headers longer than :data:`MAX_HEADER_BYTES` with a 431, quoting nothing;
* answers a request with a chunked body with a 411: no route takes a body of unknown
  length (the API takes none, the webhook's come with a ``Content-Length``), and a
  connection that could send one would leave the limits above behind.

Refusals are RFC 7807 problem documents like every other answer of the API. Idle
keep-alive connections are closed by aiohttp (``keepalive_timeout`` in ``server.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

MAX_CONNECTIONS = 1024
"""The limit of a listener that names none: the probe and metrics ports."""
MAX_CONNECTIONS_PER_SOURCE = 256
HEADER_TIMEOUT_SECONDS = 10.0
# A bearer token may be 16 KiB (api/auth.py); the rest of a request's headers fit in 16 more.
MAX_HEADER_BYTES = 32 * 1024

_END_OF_HEADERS = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)


def problem_reply(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 problem+json answer that closes the connection."""
    body = json.dumps(
        {
            "type": f"https://xg2g.io/problems/{'-'.join(reason.lower().split())}",
            "title": reason,
            "status": status,
            "detail": detail,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


TOO_MANY_CONNECTIONS = problem_reply(
    503, "Service Unavailable", "too many connections to this replica; retry in a second"
)
LENGTH_REQUIRED = problem_reply(
    411, "Length Required", "a request body must come with a Content-Length, not chunked"
)
HEADERS_TOO_LARGE = problem_reply(
    431, "Request Header Fields Too Large", f"request headers over {MAX_HEADER_BYTES} bytes"
)


class ConnectionCount:
    """The open connections, by source, shared by every :class:`GuardedConnection` of one
    listener."""

    def __init__(
        self, limit: int = MAX_CONNECTIONS, per_source: int = MAX_CONNECTIONS_PER_SOURCE
    ) -> None:
        self.limit = limit
        self.per_source = per_source
        self.open = 0
        # Oldest first: dicts keep insertion order.
        self._by_source: dict[str, dict[GuardedConnection, None]] = {}

    def admit(self, connection: GuardedConnection, source: str) -> bool:
        """Count *connection* from *source*, making room if another source holds more;
        False when it must be refused."""
        held = self._by_source.get(source, {})
        if len(held) >= self.per_source:
            return False
        if self.open >= self.limit and not self._evict_for(len(held)):
            return False
        self._by_source.setdefault(source, {})[connection] = None
        self.open += 1
        return True

    def forget(self, connection: GuardedConnection, source: str) -> None:
        """Stop counting *connection* (it closed)."""
        held = self._by_source.get(source)
        if held is None or connection not in held:
            return
        del held[connection]
        if not held:
            del self._by_source[source]
        self.open -= 1

    def held_by(self, source: str) -> int:
        """How many connections *source* holds."""
        return len(self._by_source.get(source, ()))

    def _evict_for(self, newcomer_holds: int) -> bool:
        heaviest = max(self._by_source.values(), key=len, default={})
        if len(heaviest) <= newcomer_holds + 1:
            return False
        oldest = next(iter(heaviest))
        oldest.evict()
        return True


class GuardedConnection(asyncio.Protocol):
    """One connection: the limits above, then everything else to aiohttp's *inner* protocol.

    It follows the request stream only far enough to know where each request's headers
    end: it skips a ``Content-Length`` body and refuses a chunked one.
    """

    def __init__(
        self,
        inner: asyncio.Protocol,
        count: ConnectionCount,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle] | None = None,
    ) -> None:
        self._inner = inner
        self._count = count
        self._header_timeout = header_timeout
        self._max_header_bytes = max_header_bytes
        self._call_later = call_later
        self._transport: asyncio.Transport | None = None
        self._source = ""
        self._counted = False
        self._refused = False
        self._headers = bytearray()
        self._body_left = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse the connection beyond its source's share; else hand it to aiohttp."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._count.admit(self, self._source):
            self._refuse(TOO_MANY_CONNECTIONS)
            return
        self._counted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection (and tell aiohttp, if it had it)."""
        self._cancel_timer()
        if self._counted:
            self._count.forget(self, self._source)
            self._counted = False
            self._inner.connection_lost(exc)

    def evict(self) -> None:
        """Close this connection to make room for another source's, counting it no more."""
        self._count.forget(self, self._source)
        assert self._transport is not None
        self._transport.close()

    def data_received(self, data: bytes) -> None:
        """Check the request headers as they arrive; pass the bytes on."""
        if self._refused:
            return
        if not self._follow(data):
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Pass the end of the client's stream on (aiohttp decides whether to close)."""
        return None if self._refused else self._inner.eof_received()

    def pause_writing(self) -> None:
        """Flow control belongs to aiohttp."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Flow control belongs to aiohttp."""
        self._inner.resume_writing()

    def _follow(self, data: bytes) -> bool:
        """Advance through *data*; False when the connection was refused."""
        view = memoryview(data)
        while view:
            if self._body_left:
                skipped = min(self._body_left, len(view))
                self._body_left -= skipped
                view = view[skipped:]
                continue
            if not self._headers:
                self._start_timer()
            searched_from = max(0, len(self._headers) - len(_END_OF_HEADERS) + 1)
            self._headers += view
            end = self._headers.find(_END_OF_HEADERS, searched_from)
            if end < 0:
                if len(self._headers) > self._max_header_bytes:
                    self._refuse(HEADERS_TOO_LARGE)
                    return False
                return True
            if end > self._max_header_bytes:
                self._refuse(HEADERS_TOO_LARGE)
                return False
            self._cancel_timer()
            headers, rest = bytes(self._headers[:end]), bytes(self._headers[end + 4 :])
            self._headers.clear()
            if _CHUNKED.search(headers):
                self._refuse(LENGTH_REQUIRED)
                return False
            length = _CONTENT_LENGTH.search(headers)
            self._body_left = int(length.group(1)) if length else 0
            view = memoryview(rest)
        return True

    def _start_timer(self) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(self._header_timeout, self._headers_too_slow)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self._transport is not None:
            # Nothing is answered: a client this slow is not reading either.
            self._transport.abort()

    def _refuse(self, reply: bytes) -> None:
        self._refused = True
        self._cancel_timer()
        assert self._transport is not None
        self._transport.write(reply)
        self._transport.close()
