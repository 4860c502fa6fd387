"""Assemble the heartbeat API from one apiserver connection and the settings.

The Sessions it reads come from the process's one watch, ``api.cache.SessionCache``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kubernetes_asyncio import client

from session_operator.api.auth import Authenticator, HeartbeatAuthorizer
from session_operator.api.heartbeat import HeartbeatService
from session_operator.api.lookup import SessionLookup
from session_operator.api.review_limit import ReviewLimiter
from session_operator.api.routes import HeartbeatRoutes
from session_operator.config import Settings
from session_operator.controller.session_store import SessionStore
from session_operator.k8s.outage_record import OutageMonitor
from session_operator.k8s.rest import Rest
from session_operator.k8s.sessions import SessionApi

# Every apiserver call on the request path gives up after this long, so that a stalled
# apiserver is answered with 503 in a few seconds rather than a hung request.
REQUEST_TIMEOUT_SECONDS = 2.0


def build_heartbeat_api(
    api_client: client.ApiClient,
    settings: Settings,
    clock: Callable[[], datetime],
    outages: OutageMonitor,
    store: SessionStore,
) -> HeartbeatRoutes:
    """The heartbeat API over *api_client* and the Sessions in *store* (which a
    ``SessionCache`` fills), reading the wall clock through *clock*; its apiserver
    calls tell *outages*, whose windows its lease decisions honour."""
    rest = Rest(api_client, timeout=REQUEST_TIMEOUT_SECONDS, observer=outages.health)
    sessions = SessionApi(rest)
    lookup = SessionLookup(store, sessions, settings.namespace)
    limiter = ReviewLimiter()
    authorizer = HeartbeatAuthorizer(rest, settings.auth_cache_ttl, limiter)
    service = HeartbeatService(lookup, authorizer, sessions, clock, outages.windows)
    authenticator = Authenticator(rest, settings.token_audiences, settings.auth_cache_ttl, limiter)
    return HeartbeatRoutes(authenticator, service)
