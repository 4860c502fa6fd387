"""The HTTP routes of the heartbeat API (docs/API_CONTRACT.md): parse, authenticate, call, render.

The logic lives in :mod:`session_operator.api.heartbeat`; errors are raised as they are and
rendered by the server's problem middleware. Every heartbeat is counted by result and
timed (docs/API_CONTRACT.md, Metrics).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib import resources

from aiohttp import web

from session_operator import metrics
from session_operator.api.auth import Authenticator, Caller
from session_operator.api.bodies import HeartbeatBody, SessionBody
from session_operator.api.errors import (
    BadRequest,
    Forbidden,
    LeaseNotInitialised,
    SessionGone,
    SessionNotFound,
    Unauthenticated,
)
from session_operator.api.heartbeat import (
    HeartbeatAck,
    HeartbeatService,
    SessionAddress,
    SessionView,
)
from session_operator.models import SessionRef

OPENAPI_PATH = "/api/v3/openapi.yaml"
SESSION_BY_ID = "/api/v3/sessions/{sessionID}"
SESSION_BY_NAME = "/api/v3/namespaces/{namespace}/sessions/{name}"
HEARTBEAT = "/heartbeat"

# The same patterns as the path parameters of api/openapi.yaml (a unit test holds them equal).
# A sessionID is status.sessionID (the Session's uid), not required to be a UUID.
SESSION_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}"
NAMESPACE_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
NAME_PATTERN = r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?"
_PARAMETERS = {
    "sessionID": (re.compile(SESSION_ID_PATTERN), "1 to 128 letters, digits, '.', '_', '~', '-'"),
    "namespace": (re.compile(NAMESPACE_PATTERN), "a namespace name (DNS label)"),
    "name": (re.compile(NAME_PATTERN), "a Session name (at most 63 characters)"),
}


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of this API, as packaged."""
    return resources.files("session_operator.api").joinpath("openapi.yaml").read_bytes()


def heartbeat_result(error: Exception) -> str:
    """The ``result`` label of ``xg2g_sessions_heartbeat_total`` for a refused heartbeat."""
    if isinstance(error, Unauthenticated):
        return "unauthorized"
    if isinstance(error, Forbidden):
        return "forbidden"
    if isinstance(error, SessionNotFound):
        return "not_found"
    if isinstance(error, SessionGone):
        return "gone"
    if isinstance(error, LeaseNotInitialised):
        return "not_initialised"
    return "error"


def heartbeat_body(ack: HeartbeatAck) -> HeartbeatBody:
    """The body that answers an accepted heartbeat."""
    return HeartbeatBody(
        session_id=ack.session_id,
        lease_expires_at=ack.lease_expires_at,
        heartbeat_interval=ack.heartbeat_interval,
        seconds_left=ack.countdown.seconds_left,
        expiring_soon=ack.countdown.expiring_soon,
    )


def session_body(view: SessionView) -> SessionBody:
    """The body that answers a session read."""
    return SessionBody(
        session_id=view.session_id,
        namespace=view.ref.namespace,
        name=view.ref.name,
        state=view.state,
        lease_expires_at=view.lease_expires_at,
        heartbeat_interval=view.heartbeat_interval,
        last_heartbeat=view.last_heartbeat,
        stop_reason=view.stop_reason,
        seconds_left=view.countdown.seconds_left,
        expiring_soon=view.countdown.expiring_soon,
    )


class HeartbeatRoutes:
    """The ``/api/v3`` routes."""

    def __init__(self, authenticator: Authenticator, service: HeartbeatService) -> None:
        self._authenticator = authenticator
        self._service = service
        self._openapi = openapi_document()

    def register(self, router: web.UrlDispatcher) -> None:
        """Add the routes to *router* (each with exactly its documented method)."""
        router.add_route("POST", SESSION_BY_ID + HEARTBEAT, self.beat_by_id)
        router.add_route("POST", SESSION_BY_NAME + HEARTBEAT, self.beat_by_name)
        router.add_route("GET", SESSION_BY_ID, self.read_by_id)
        router.add_route("GET", SESSION_BY_NAME, self.read_by_name)
        router.add_route("GET", OPENAPI_PATH, self.openapi)

    async def beat_by_id(self, request: web.Request) -> web.Response:
        """``POST /api/v3/sessions/{sessionID}/heartbeat``."""
        return await self._beat(request, _by_id)

    async def beat_by_name(self, request: web.Request) -> web.Response:
        """``POST /api/v3/namespaces/{namespace}/sessions/{name}/heartbeat``."""
        return await self._beat(request, _by_name)

    async def read_by_id(self, request: web.Request) -> web.Response:
        """``GET /api/v3/sessions/{sessionID}``."""
        caller = await self._caller(request)
        view = await self._service.read(caller, _by_id(request))
        return _json(session_body(view).model_dump_json())

    async def read_by_name(self, request: web.Request) -> web.Response:
        """``GET /api/v3/namespaces/{namespace}/sessions/{name}``."""
        caller = await self._caller(request)
        view = await self._service.read(caller, _by_name(request))
        return _json(session_body(view).model_dump_json())

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /api/v3/openapi.yaml``: the document, for any authenticated caller."""
        await self._caller(request)
        return web.Response(body=self._openapi, content_type="application/yaml")

    async def _beat(
        self, request: web.Request, address_of: Callable[[web.Request], SessionAddress]
    ) -> web.Response:
        started = time.perf_counter()
        try:
            caller = await self._caller(request)
            ack = await self._service.beat(caller, address_of(request))
        except Exception as error:
            metrics.HEARTBEATS.labels(result=heartbeat_result(error)).inc()
            raise
        finally:
            metrics.HEARTBEAT_DURATION.observe(time.perf_counter() - started)
        metrics.HEARTBEATS.labels(result="extended" if ack.extended else "noop").inc()
        return _json(heartbeat_body(ack).model_dump_json())

    async def _caller(self, request: web.Request) -> Caller:
        return await self._authenticator.authenticate(
            request.headers.get("Authorization"), request.remote or ""
        )


def _by_id(request: web.Request) -> SessionAddress:
    return _parameter(request, "sessionID")


def _by_name(request: web.Request) -> SessionAddress:
    return SessionRef(namespace=_parameter(request, "namespace"), name=_parameter(request, "name"))


def _parameter(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    pattern, expected = _PARAMETERS[name]
    if not pattern.fullmatch(value):
        raise BadRequest(f"path parameter {name} must be {expected}")
    return value


def _json(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")
