"""Assemble the heartbeat API from its apiserver client and the settings.

The Sessions it reads come from the process's one watch, ``informer.session_cache``; its
client, with the request path's deadline per call, is built in ``runtime.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from session_operator.api.auth import Authenticator, HeartbeatAuthorizer
from session_operator.api.heartbeat import HeartbeatService
from session_operator.api.lookup import SessionLookup
from session_operator.api.review_limit import ReviewLimiter
from session_operator.api.routes import HeartbeatRoutes
from session_operator.config import Settings
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.outage_record import OutageMonitor
from session_operator.k8s.rest import Rest
from session_operator.k8s.sessions import SessionApi


def build_heartbeat_api(
    rest: Rest,
    settings: Settings,
    clock: Callable[[], datetime],
    outages: OutageMonitor,
    store: SessionStore,
) -> HeartbeatRoutes:
    """The heartbeat API over *rest* and the Sessions in *store* (which a
    ``SessionCache`` fills), reading the wall clock through *clock*; its lease decisions
    honour the windows of *outages*, which *rest*'s calls tell."""
    sessions = SessionApi(rest)
    lookup = SessionLookup(store, sessions, settings.namespace)
    limiter = ReviewLimiter(on_full=outages.health.heartbeat_refused)
    authorizer = HeartbeatAuthorizer(rest, settings.auth_cache_ttl, limiter)
    service = HeartbeatService(
        lookup, authorizer, sessions, clock, outages.windows, expiry_warning=settings.expiry_warning
    )
    authenticator = Authenticator(rest, settings.token_audiences, settings.auth_cache_ttl, limiter)
    return HeartbeatRoutes(authenticator, service)
