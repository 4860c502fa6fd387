"""RFC 7807 problem details: the one place that maps a failure to an HTTP status.

Every error response of the API is ``application/problem+json`` with a ``type`` URI that
names the failure (documented in docs/API_CONTRACT.md), the status, a title, a detail, and
for a stopped session its state. Nothing internal (no stack trace, no apiserver message
that could leak another namespace) reaches the client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from session_operator.api.errors import (
    AuthenticationUnavailable,
    BadRequest,
    CacheNotSynced,
    Forbidden,
    LeaseNotInitialised,
    SessionGone,
    SessionNotFound,
    Unauthenticated,
    WriteContention,
)
from session_operator.k8s.errors import ApiUnavailable, Rejected

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://xg2g.io/problems/"
REALM = "session-lease-operator"
# Seconds a client should wait before retrying after an apiserver outage.
OUTAGE_RETRY_AFTER = 2


@dataclass(frozen=True)
class Problem:
    """One problem response: status, type (a slug under :data:`PROBLEM_TYPES`), texts."""

    status: int
    slug: str
    title: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def body(self, instance: str) -> dict[str, Any]:
        """The problem+json document, for the request path *instance*."""
        return {
            "type": PROBLEM_TYPES + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extensions,
        }


def problem_for(error: Exception) -> Problem:
    """The problem that answers *error*; anything unexpected is a bare 500."""
    if isinstance(error, Unauthenticated):
        return Problem(
            401,
            "unauthenticated",
            "Unauthorized",
            str(error),
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    if isinstance(error, BadRequest):
        return Problem(400, "bad-request", "Bad Request", str(error))
    if isinstance(error, Forbidden):
        return Problem(403, "forbidden", "Forbidden", str(error))
    if isinstance(error, SessionNotFound):
        return Problem(404, "session-not-found", "Session Not Found", str(error))
    if isinstance(error, LeaseNotInitialised):
        return Problem(
            409, "lease-not-initialised", "Lease Not Initialised", str(error), {"Retry-After": "1"}
        )
    if isinstance(error, SessionGone):
        return Problem(
            410,
            "session-gone",
            "Session Gone",
            f"{error}: stop sending heartbeats",
            extensions={
                "session_id": error.session_id,
                "state": error.state.value,
                "stop_reason": error.stop_reason.value if error.stop_reason else None,
            },
        )
    if isinstance(error, CacheNotSynced):
        return Problem(503, "not-ready", "Service Unavailable", str(error), _retry(1))
    if isinstance(error, AuthenticationUnavailable):
        return Problem(
            503, "authentication-unavailable", "Service Unavailable", str(error), _retry(1)
        )
    if isinstance(error, WriteContention):
        return Problem(503, "write-contention", "Service Unavailable", str(error), _retry(1))
    if isinstance(error, ApiUnavailable):
        detail = "the Kubernetes apiserver cannot be reached; retry later"
        return Problem(
            503, "apiserver-unavailable", "Service Unavailable", detail, _retry(OUTAGE_RETRY_AFTER)
        )
    if isinstance(error, Rejected):
        detail = "the Kubernetes apiserver refused the operator's request; see the operator log"
        return Problem(502, "apiserver-refused", "Bad Gateway", detail)
    if isinstance(error, web.HTTPException):
        return _http_problem(error)
    return Problem(500, "internal-error", "Internal Server Error", "see the operator log")


def problem_response(problem: Problem, instance: str) -> web.Response:
    """The aiohttp response for *problem* (``Cache-Control: no-store`` included)."""
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.body(instance)),
        content_type=PROBLEM_JSON,
        headers={**problem.headers, "Cache-Control": "no-store"},
    )


def _http_problem(error: web.HTTPException) -> Problem:
    # aiohttp's own answers: an unknown path (404), a method the path does not serve (405).
    headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else {}
    title = error.reason
    slug = "-".join(title.lower().split())
    detail = {404: "no such path", 405: "this path does not serve this method"}.get(
        error.status, title
    )
    return Problem(error.status, slug, title, detail, headers)


def _retry(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}
