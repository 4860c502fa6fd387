"""The aiohttp server in kopf's event loop: probes, metrics, and the heartbeat API."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from session_operator import metrics
from session_operator.api.problems import problem_for, problem_response
from session_operator.api.routes import HeartbeatRoutes
from session_operator.config import Settings

NO_STORE = {"Cache-Control": "no-store"}

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


def create_app(ready: Callable[[], bool], routes: HeartbeatRoutes | None = None) -> web.Application:
    """The probe and metrics routes, and the heartbeat API's *routes*; *ready* answers
    ``/readyz``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=NO_STORE)

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"}, headers=NO_STORE)
        return web.json_response({"status": "not ready"}, status=503, headers=NO_STORE)

    async def metrics_page(_: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        response = web.Response(body=body, headers=NO_STORE)
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app = web.Application(middlewares=[problem_responses])
    # Exactly the documented methods: no implicit HEAD, so `Allow` matches the OpenAPI.
    app.router.add_route("GET", "/healthz", healthz)
    app.router.add_route("GET", "/readyz", readyz)
    app.router.add_route("GET", "/metrics", metrics_page)
    if routes is not None:
        routes.register(app.router)
    return app


async def start_server(app: web.Application, settings: Settings) -> web.AppRunner:
    """Serve *app* on the configured address (HTTPS when a certificate is configured)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if settings.tls_cert_file and settings.tls_key_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    site = web.TCPSite(runner, settings.api_host, settings.api_port, ssl_context=context)
    await site.start()
    return runner
