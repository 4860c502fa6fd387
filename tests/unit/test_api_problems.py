"""Every failure maps to one problem+json answer, in one place (RFC 7807)."""

from __future__ import annotations

import json

import pytest
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
from session_operator.api.problems import PROBLEM_JSON, problem_for, problem_response
from session_operator.api.routes import heartbeat_result
from session_operator.k8s.errors import ApiUnavailable, Rejected
from session_operator.lease import SessionState, StopReason


@pytest.mark.parametrize(
    ("error", "status", "slug", "headers"),
    [
        (Unauthenticated("no token"), 401, "unauthenticated", {"WWW-Authenticate"}),
        (BadRequest("bad name"), 400, "bad-request", set()),
        (Forbidden("not yours"), 403, "forbidden", set()),
        (SessionNotFound("none"), 404, "session-not-found", set()),
        (LeaseNotInitialised("soon"), 409, "lease-not-initialised", {"Retry-After"}),
        (WriteContention("busy"), 503, "write-contention", {"Retry-After"}),
        (CacheNotSynced("loading"), 503, "not-ready", {"Retry-After"}),
        (AuthenticationUnavailable("down"), 503, "authentication-unavailable", {"Retry-After"}),
        (ApiUnavailable("timeout"), 503, "apiserver-unavailable", {"Retry-After"}),
        (Rejected("403: forbidden"), 502, "apiserver-refused", set()),
    ],
)
def test_each_failure_has_its_status_and_type(
    error: Exception, status: int, slug: str, headers: set[str]
) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.slug) == (status, slug)
    assert set(problem.headers) == headers


def test_conflict_asks_to_retry_after_one_second() -> None:
    assert problem_for(LeaseNotInitialised("soon")).headers["Retry-After"] == "1"


def test_outage_is_never_an_auth_answer_and_says_when_to_retry() -> None:
    problem = problem_for(ApiUnavailable("TokenReview timed out"))
    assert problem.status == 503
    assert int(problem.headers["Retry-After"]) >= 1
    assert "TokenReview" not in problem.detail


def test_gone_names_the_state_and_reason() -> None:
    gone = SessionGone("uid-1", SessionState.STOPPING, StopReason.LEASE_EXPIRED)
    body = problem_for(gone).body("/api/v3/sessions/uid-1/heartbeat")
    assert body["status"] == 410
    assert body["type"] == "https://xg2g.io/problems/session-gone"
    assert (body["session_id"], body["state"], body["stop_reason"]) == (
        "uid-1",
        "stopping",
        "LEASE_EXPIRED",
    )
    assert body["instance"] == "/api/v3/sessions/uid-1/heartbeat"
    assert body["detail"].startswith("session uid-1 is stopping (LEASE_EXPIRED)")


def test_gone_names_the_session_as_the_request_did() -> None:
    gone = SessionGone("uid-1", SessionState.STOPPED, StopReason.USER_STOPPED, "media/s")
    body = problem_for(gone).body("/api/v3/namespaces/media/sessions/s/heartbeat")
    assert body["detail"].startswith("session media/s is stopped (USER_STOPPED)")
    assert body["session_id"] == "uid-1"


def test_unexpected_error_is_a_bare_500_without_its_message() -> None:
    problem = problem_for(KeyError("secret internals"))
    assert problem.status == 500
    assert "secret internals" not in json.dumps(problem.body("/x"))


@pytest.mark.parametrize(
    ("error", "status", "slug", "detail", "headers"),
    [
        (web.HTTPNotFound(), 404, "not-found", "no such path", {}),
        (web.HTTPMethodNotAllowed("DELETE", ["POST"]), 405, "method-not-allowed",
         "this path does not serve this method", {"Allow": "POST"}),
        (web.HTTPLengthRequired(), 411, "length-required", "Length Required", {}),
    ],
)  # fmt: skip
def test_aiohttps_own_answers_are_problems_too(
    error: web.HTTPException, status: int, slug: str, detail: str, headers: dict[str, str]
) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.slug, problem.detail) == (status, slug, detail)
    assert dict(problem.headers) == headers


def test_response_is_problem_json_and_not_cacheable() -> None:
    response = problem_response(problem_for(SessionNotFound("no session media/x")), "/p")
    assert response.status == 404
    assert response.content_type == PROBLEM_JSON
    assert response.headers["Cache-Control"] == "no-store"
    assert response.text is not None
    body = json.loads(response.text)
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["detail"] == "no session media/x"


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (Unauthenticated("x"), "unauthorized"),
        (Forbidden("x"), "forbidden"),
        (SessionNotFound("x"), "not_found"),
        (SessionGone("uid-1", SessionState.STOPPED, StopReason.USER_STOPPED), "gone"),
        (LeaseNotInitialised("x"), "not_initialised"),
        (ApiUnavailable("x"), "error"),
        (BadRequest("x"), "error"),
    ],
)
def test_each_refused_heartbeat_is_counted_by_its_result(error: Exception, result: str) -> None:
    assert heartbeat_result(error) == result
