"""Bearer tokens, TokenReview, SubjectAccessReview: what is asked, read and cached."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from session_operator.api.auth import (
    Authenticator,
    Caller,
    HeartbeatAuthorizer,
    access_allowed,
    bearer_token,
    heartbeat_access_review_body,
    token_review_body,
    token_verdict,
)
from session_operator.api.errors import AuthenticationUnavailable, Forbidden, Unauthenticated
from session_operator.api.review_limit import ReviewLimiter
from session_operator.k8s.errors import ApiUnavailable
from session_operator.models import SessionRef
from tests.unit.builders import FakeRest

REF = SessionRef(namespace="media", name="living-room")
PLAYER = {
    "username": "system:serviceaccount:media:player",
    "uid": "sa-uid",
    "groups": ["system:serviceaccounts", "system:authenticated"],
    "extra": {"authentication.kubernetes.io/credential-id": ["JTI=1"]},
}


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Bearer tok en", "Bearer tøken"],
)
def test_missing_or_malformed_bearer_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_bearer_token_is_read_case_insensitively() -> None:
    assert bearer_token("bearer abc.def-ghi_jkl") == "abc.def-ghi_jkl"


def test_token_review_asks_for_the_configured_audiences_only_when_given() -> None:
    assert "audiences" not in token_review_body("t", [])["spec"]
    assert token_review_body("t", ["session-heartbeat"])["spec"] == {
        "token": "t",
        "audiences": ["session-heartbeat"],
    }


def test_token_verdict_reads_the_user() -> None:
    verdict = token_verdict({"status": {"authenticated": True, "user": PLAYER}}, [])
    assert verdict.caller == Caller(
        username="system:serviceaccount:media:player",
        uid="sa-uid",
        groups=("system:serviceaccounts", "system:authenticated"),
        extra=(("authentication.kubernetes.io/credential-id", ("JTI=1",)),),
    )


@pytest.mark.parametrize(
    "status", [{}, {"authenticated": False, "error": "invalid"}, {"authenticated": True}]
)
def test_token_verdict_without_an_authenticated_user_has_no_caller(status: dict[str, Any]) -> None:
    assert token_verdict({"status": status}, []).caller is None


@pytest.mark.parametrize(
    ("answered", "accepted"),
    [
        (["session-lease-operator"], True),
        (["session-lease-operator", "other"], True),
        (["https://kubernetes.default.svc"], False),
        (None, False),
    ],
)
def test_token_is_accepted_only_when_the_apiserver_confirms_the_audience(
    answered: list[str] | None, accepted: bool
) -> None:
    status: dict[str, Any] = {"authenticated": True, "user": PLAYER}
    if answered is not None:
        status["audiences"] = answered
    verdict = token_verdict({"status": status}, ["session-lease-operator"])
    assert (verdict.caller is not None) is accepted
    if not accepted:
        assert "not meant for this API" in verdict.reason


@pytest.mark.parametrize(
    "error",
    [
        'Post "https://authn.example/review": dial tcp 10.0.0.9:443: connect: connection refused',
        "context deadline exceeded",
        "webhook token authenticator: unexpected status code 503",
        "oidc: authenticator not initialized",
    ],
)
def test_authenticator_failure_is_unavailable_not_a_refusal(error: str) -> None:
    with pytest.raises(AuthenticationUnavailable):
        token_verdict({"status": {"authenticated": False, "error": error}}, [])


@pytest.mark.parametrize(
    "error",
    [
        "[invalid bearer token, service account token has expired]",
        "[invalid bearer token, square/go-jose: error in cryptographic primitive]",
        'token audiences ["x"] is invalid for the target audiences ["y"]',
    ],
)
def test_bad_token_reasons_are_refusals(error: str) -> None:
    verdict = token_verdict({"status": {"authenticated": False, "error": error}}, [])
    assert verdict.caller is None


def test_access_review_asks_for_create_on_sessions_heartbeat_in_the_session_namespace() -> None:
    caller = token_verdict({"status": {"authenticated": True, "user": PLAYER}}, []).caller
    assert caller is not None
    spec = heartbeat_access_review_body(caller, REF)["spec"]
    assert spec["resourceAttributes"] == {
        "namespace": "media",
        "verb": "create",
        "group": "xg2g.io",
        "resource": "sessions",
        "subresource": "heartbeat",
        "name": "living-room",
    }
    assert (spec["user"], spec["uid"], spec["groups"]) == (
        PLAYER["username"],
        "sa-uid",
        PLAYER["groups"],
    )
    assert spec["extra"] == PLAYER["extra"]


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ({"allowed": True}, True),
        ({"allowed": False}, False),
        ({"allowed": True, "denied": True}, False),
        ({}, False),
    ],
)
def test_access_is_allowed_only_when_allowed_and_not_denied(
    status: dict[str, Any], allowed: bool
) -> None:
    assert access_allowed({"status": status}) is allowed


async def test_token_reviews_are_cached_and_shared_by_concurrent_requests() -> None:
    answer = {"authenticated": True, "user": PLAYER, "audiences": ["aud"]}
    rest = FakeRest([{"status": answer}])
    authenticator = Authenticator(rest, ["aud"], timedelta(seconds=10), ReviewLimiter())
    callers = await asyncio.gather(
        *(authenticator.authenticate("Bearer t0ken", "10.0.0.7") for _ in range(5))
    )
    assert {caller.username for caller in callers} == {PLAYER["username"]}
    assert len(rest.requests) == 1
    method, path, body = rest.requests[0]
    assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert body["spec"] == {"token": "t0ken", "audiences": ["aud"]}


async def test_refused_token_is_unauthenticated() -> None:
    authenticator = Authenticator(
        FakeRest([{"status": {"authenticated": False}}]), [], timedelta(seconds=10), ReviewLimiter()
    )
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate("Bearer nope", "10.0.0.7")


async def test_token_review_outage_is_unavailable_and_not_cached() -> None:
    rest = FakeRest(
        [ApiUnavailable("timeout"), {"status": {"authenticated": True, "user": PLAYER}}]
    )
    authenticator = Authenticator(rest, [], timedelta(seconds=10), ReviewLimiter())
    with pytest.raises(ApiUnavailable):
        await authenticator.authenticate("Bearer t0ken", "10.0.0.7")
    assert (await authenticator.authenticate("Bearer t0ken", "10.0.0.7")).username == PLAYER[
        "username"
    ]


async def test_authenticator_failure_is_not_cached() -> None:
    down = {"authenticated": False, "error": "dial tcp 10.0.0.9:443: connection refused"}
    rest = FakeRest([{"status": down}, {"status": {"authenticated": True, "user": PLAYER}}])
    authenticator = Authenticator(rest, [], timedelta(seconds=10), ReviewLimiter())
    with pytest.raises(AuthenticationUnavailable):
        await authenticator.authenticate("Bearer t0ken", "10.0.0.7")
    assert (await authenticator.authenticate("Bearer t0ken", "10.0.0.7")).username == PLAYER[
        "username"
    ]


async def test_denied_access_is_forbidden_without_naming_the_namespace() -> None:
    denied = {"status": {"allowed": False}}
    authorizer = HeartbeatAuthorizer(
        FakeRest([denied, denied]), timedelta(seconds=10), ReviewLimiter()
    )
    caller = Caller(username="system:serviceaccount:other:player")
    with pytest.raises(Forbidden) as refused:
        await authorizer.authorize(caller, REF)
    assert "system:serviceaccount:other:player" in str(refused.value)
    assert "media" not in str(refused.value)
    with pytest.raises(Forbidden):
        await authorizer.authorize(caller, REF)  # cached: no second review was answered


async def test_access_review_outage_is_unavailable_never_forbidden() -> None:
    authorizer = HeartbeatAuthorizer(
        FakeRest([ApiUnavailable("timeout")]), timedelta(seconds=10), ReviewLimiter()
    )
    with pytest.raises(ApiUnavailable):
        await authorizer.authorize(Caller(username="u"), REF)


async def test_one_namespace_wide_review_serves_every_session_of_the_namespace() -> None:
    rest = FakeRest([{"status": {"allowed": True}}])
    authorizer = HeartbeatAuthorizer(rest, timedelta(seconds=10), ReviewLimiter())
    caller = Caller(username="system:serviceaccount:media:player")
    for name in ("living-room", "kitchen", "garage"):
        await authorizer.authorize(caller, SessionRef(namespace="media", name=name))
    assert len(rest.requests) == 1
    attributes = rest.requests[0][2]["spec"]["resourceAttributes"]
    assert "name" not in attributes
    assert attributes["namespace"] == "media"


async def test_a_binding_that_names_the_session_is_asked_about_when_the_namespace_is_not() -> None:
    rest = FakeRest([{"status": {"allowed": False}}, {"status": {"allowed": True}}])
    authorizer = HeartbeatAuthorizer(rest, timedelta(seconds=10), ReviewLimiter())
    caller = Caller(username="system:serviceaccount:media:player")
    await authorizer.authorize(caller, REF)
    await authorizer.authorize(caller, REF)  # both decisions cached
    assert len(rest.requests) == 2
    assert rest.requests[1][2]["spec"]["resourceAttributes"]["name"] == REF.name
