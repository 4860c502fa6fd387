"""A stand-in for the heartbeat API on loopback, for tests of what the client says and does
with each answer, without an operator or a cluster."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBLEM_TYPES = "https://xg2g.io/problems/"

Answer = tuple[int, dict[str, Any]]
"""An HTTP status and its JSON document."""


@dataclass
class StubApi:
    """Where the stub listens, and the ``(path, Authorization)`` of each POST it got."""

    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)


def acknowledgement(interval: int = 1) -> Answer:
    """A 200 that acknowledges a beat, naming the next one in *interval* seconds."""
    return 200, {
        "session_id": "6f1c",
        "acknowledged": True,
        "lease_expires_at": "2030-01-01T00:00:00.000Z",
        "heartbeat_interval": interval,
    }


def expiring_soon(seconds_left: float, interval: int = 0) -> Answer:
    """An acknowledgement that says the lease is in its expiry warning window, with
    *seconds_left* (the next beat in *interval* seconds)."""
    status, document = acknowledgement(interval)
    return status, document | {"seconds_left": seconds_left, "expiring_soon": True}


def in_turn(*answers: Answer, then: Answer) -> Callable[[str, str], Answer]:
    """An ``answer`` for :func:`stub_api`: each POST gets the next of *answers*; once they
    are used up, *then*."""
    pending = list(answers)
    return lambda path, authorization: pending.pop(0) if pending else then


def problem(status: int, slug: str, detail: str, **extensions: Any) -> Answer:
    """A problem+json answer as the API writes it (docs/API_CONTRACT.md)."""
    return status, {
        "type": PROBLEM_TYPES + slug,
        "title": slug,
        "status": status,
        "detail": detail,
        **extensions,
    }


@contextmanager
def stub_api(answer: Callable[[str, str], Answer]) -> Iterator[StubApi]:
    """Serve on a free loopback port, answering each POST with ``answer(path,
    authorization)`` as ``application/problem+json`` (or JSON for a 200)."""
    stub = StubApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            authorization = self.headers.get("Authorization", "")
            stub.requests.append((self.path, authorization))
            status, document = answer(self.path, authorization)
            body = json.dumps(document).encode()
            self.send_response(status)
            kind = "application/json" if status == 200 else "application/problem+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a test reads the requests from :attr:`StubApi.requests`."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
