"""The aiohttp server in the operator's one event loop: probes, metrics, the heartbeat API and the
admission webhook, each on the listener that suits its callers.

* the API port: the heartbeat API (and the probes and, unless it has a port of its own,
  ``/metrics``) for any caller; it reads no request body;
* ``probePort``: ``/healthz`` and ``/readyz`` only, for the kubelet, so that callers of
  the API cannot crowd its probes out;
* ``metricsPort``: ``/metrics`` only;
* ``webhookPort``: the admission webhook only, over TLS, for the apiserver, with room for
  its review bodies and no more.

Every listener counts its own connections (:mod:`session_operator.api.connections`).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from session_operator import metrics
from session_operator.api.admission import AdmissionRoutes
from session_operator.api.certificates import ReloadingCertificate
from session_operator.api.connections import (
    HEADER_TIMEOUT_SECONDS,
    MAX_HEADER_BYTES,
    ConnectionCount,
    GuardedConnection,
)
from session_operator.api.problems import Problem, problem_for, problem_response
from session_operator.config import Settings

NO_STORE = {"Cache-Control": "no-store"}
MAX_API_BODY_BYTES = 1024
"""The heartbeat API and the probes take no request body."""
TLS_READ_BUFFER_BYTES = 16 * 1024
"""asyncio gives every TLS connection a read buffer of 256 KiB: 282 KiB per idle
connection (measured, Python 3.11), so even 1,024 connections would take a replica's whole
memory limit. Requests here are a few KiB; with 16 KiB an idle connection costs 42 KiB, and
the 4,096 the API port holds by default (``apiMaxConnections``) about 170 MiB."""
WEBHOOK_CONNECTIONS = 64
"""The apiserver keeps a few connections to a webhook; nobody else has reason to call it."""
# Idle keep-alive connections are closed after this long (aiohttp's default is an hour).
KEEPALIVE_TIMEOUT_SECONDS = 30.0

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure with problem+json, and every response with ``no-store``."""
    try:
        response = await handler(request)
    except Exception as error:
        problem = problem_for(error)
        if problem.status == 500:
            logger.exception("%s %s failed", request.method, request.path)
        response = problem_response(problem, request.path)
    response.headers["Cache-Control"] = "no-store"
    return response


class RouteGroup(Protocol):
    """Routes that add themselves to a router (the heartbeat API, the admission webhook)."""

    def register(self, router: web.UrlDispatcher) -> None:
        """Add the routes to *router*."""


def create_app(
    ready: Callable[[], bool], *groups: RouteGroup, serve_metrics: bool = True
) -> web.Application:
    """The probe routes, ``/metrics`` unless *serve_metrics* is false (it has a port of its
    own then, :func:`metrics_app`), and the routes of *groups*; *ready* answers
    ``/readyz``. It reads no request body."""
    app = probes_app(ready, client_max_size=MAX_API_BODY_BYTES)
    if serve_metrics:
        app.router.add_route("GET", "/metrics", metrics_page)
    for group in groups:
        group.register(app.router)
    return app


def probes_app(ready: Callable[[], bool], client_max_size: int = 0) -> web.Application:
    """``/healthz`` and ``/readyz`` (*ready* answers it), for a port of their own
    (setting ``probePort``) or with the API."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=NO_STORE)

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"}, headers=NO_STORE)
        return web.json_response({"status": "not ready"}, status=503, headers=NO_STORE)

    app = web.Application(middlewares=[problem_responses], client_max_size=client_max_size)
    # Exactly the documented methods: no implicit HEAD, so `Allow` matches the OpenAPI.
    app.router.add_route("GET", "/healthz", healthz)
    app.router.add_route("GET", "/readyz", readyz)
    return app


def webhook_app(admission: AdmissionRoutes) -> web.Application:
    """The admission webhook alone, for its port (setting ``webhookPort``)."""
    app = web.Application(middlewares=[problem_responses], client_max_size=admission.max_body_bytes)
    admission.register(app.router)
    return app


def metrics_app() -> web.Application:
    """``/metrics`` alone, for a port of its own (setting ``metricsPort``)."""
    app = web.Application(middlewares=[problem_responses])
    app.router.add_route("GET", "/metrics", metrics_page)
    return app


async def metrics_page(_: web.Request) -> web.Response:
    """The Prometheus text page of the operator's metrics."""
    body = generate_latest(metrics.REGISTRY)
    response = web.Response(body=body, headers=NO_STORE)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


# aiohttp's options for each connection's RequestHandler.
HANDLER_OPTIONS: dict[str, Any] = {
    "access_log": None,
    # Idle keep-alive connections are closed after this long (aiohttp's default is an hour).
    "keepalive_timeout": KEEPALIVE_TIMEOUT_SECONDS,
    # Longer than api/connections.py lets through: aiohttp never judges a size itself.
    "max_line_size": 2 * MAX_HEADER_BYTES,
    "max_field_size": 2 * MAX_HEADER_BYTES,
}
WEBHOOK_HANDLER_OPTIONS: dict[str, Any] = {
    **HANDLER_OPTIONS,
    # A review whose body was late is answered and its connection closed at once, rather
    # than read on for aiohttp's default 10 s.
    "lingering_time": 0,
}


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, answering what it cannot parse with a
    problem+json 4xx that quotes nothing of the request, logged in one line."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not read or serve."""
        if status >= 500:
            logger.error("%s %s failed", request.method, request.path, exc_info=exc)
            detail = "see the operator log"
        else:
            logger.debug("unreadable request from %s: %s", request.remote, type(exc).__name__)
            detail = "the request is not valid HTTP"
        title = HTTPStatus(status).phrase
        problem = Problem(status, "-".join(title.lower().split()), title, detail)
        response = problem_response(problem, "")
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCP site whose every connection passes the limits of
    :mod:`session_operator.api.connections` before aiohttp reads it."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        count: ConnectionCount,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
        handler_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.count = count
        self.header_timeout = header_timeout
        self.handler_options = handler_options or HANDLER_OPTIONS

    async def start(self) -> None:
        """Listen, wrapping aiohttp's protocol of each connection."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def connection() -> GuardedConnection:
            handler = ProblemRequestHandler(server, loop=loop, **self.handler_options)
            return GuardedConnection(handler, self.count, self.header_timeout)

        self._server = await loop.create_server(
            connection,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=HEADER_TIMEOUT_SECONDS if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


async def start_server(
    ready: Callable[[], bool],
    settings: Settings,
    api: RouteGroup | None = None,
    admission: AdmissionRoutes | None = None,
) -> list[web.AppRunner]:
    """Serve the probes, *api* and ``/metrics`` on the configured address (HTTPS when a
    certificate is configured); ``/metrics``, the probes and *admission* on their own
    ports where those are set (see the module's docstring); the runners to clean up."""
    groups = [api] if api is not None else []
    app = create_app(ready, *groups, serve_metrics=settings.metrics_port is None)
    context = None
    if settings.tls_cert_file and settings.tls_key_file:
        # A class attribute read as each connection is made: no public setting exists.
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
        certificate = ReloadingCertificate(settings.tls_cert_file, settings.tls_key_file)
        context = certificate.context
        _run_while_serving(app, certificate.watch())
    host = settings.api_host
    api_count = ConnectionCount(settings.api_max_connections)
    runners = [await _serve(app, host, settings.api_port, context, api_count)]
    if settings.metrics_port is not None:
        runners.append(await _serve(metrics_app(), host, settings.metrics_port, None))
    if settings.probe_port is not None:
        runners.append(await _serve(probes_app(ready), host, settings.probe_port, None))
    if settings.webhook_port is not None and admission is not None:
        count = ConnectionCount(WEBHOOK_CONNECTIONS, per_source=WEBHOOK_CONNECTIONS)
        webhook = _serve(
            webhook_app(admission), host, settings.webhook_port, context, count,
            WEBHOOK_HANDLER_OPTIONS,
        )  # fmt: skip
        runners.append(await webhook)
    return runners


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    count: ConnectionCount | None = None,
    handler_options: dict[str, Any] | None = None,
) -> web.AppRunner:
    options = handler_options or HANDLER_OPTIONS
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = GuardedSite(
        runner, host, port, context, count or ConnectionCount(), handler_options=options
    )
    await site.start()
    return runner


def _run_while_serving(app: web.Application, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)

    async def stop(_: web.Application) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_cleanup.append(stop)
