"""Who is calling, and may they beat this session: TokenReview, then SubjectAccessReview.

A heartbeat carries ``Authorization: Bearer <token>``, usually a projected ServiceAccount
token. The apiserver says who it is (TokenReview, with the configured audiences) and whether
that identity may ``create`` ``sessions/heartbeat`` in group ``xg2g.io`` for this session
(SubjectAccessReview). Decisions are cached for a short TTL, refusals in a pool of their
own; at most a few reviews run at once (:mod:`session_operator.api.review_limit`). A review
that cannot be made raises ``ApiUnavailable`` (503), and one whose authenticator reports an
error raises :class:`AuthenticationUnavailable` (503, not cached): an outage is never
answered as 401 or 403. A token is accepted only if the apiserver confirms one of the
configured audiences, so a token minted for another audience is not replayable here, and a
heartbeat token is not one the apiserver itself accepts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from session_operator.api.decision_cache import DecisionCache
from session_operator.api.errors import AuthenticationUnavailable, Forbidden, Unauthenticated
from session_operator.api.review_limit import ReviewLimiter
from session_operator.k8s.rest import Rest
from session_operator.models import GROUP, PLURAL, SessionRef

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
HEARTBEAT_VERB = "create"
HEARTBEAT_SUBRESOURCE = "heartbeat"
MAX_TOKEN_LENGTH = 16_384
# Bearer tokens (JWTs, opaque tokens) are visible ASCII; anything else is refused unread.
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Caller:
    """An authenticated identity, as TokenReview reports it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class TokenVerdict:
    """What TokenReview said of a token: the caller, or why there is none."""

    caller: Caller | None
    reason: str = ""


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; else :class:`Unauthenticated`."""
    if not authorization or not authorization.strip():
        raise Unauthenticated("no bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
        raise Unauthenticated("the bearer token is malformed")
    return token


def token_review_body(token: str, audiences: Sequence[str]) -> dict[str, Any]:
    """A TokenReview of *token*; empty *audiences* means the apiserver's own."""
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = list(audiences)
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}


def token_verdict(review: Mapping[str, Any], audiences: Sequence[str]) -> TokenVerdict:
    """Read the apiserver's answer to a TokenReview that asked for *audiences*.

    Raises :class:`AuthenticationUnavailable` when the authenticator failed rather than
    judged the token (see :func:`authenticator_failed`).
    """
    status = review.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        if authenticator_failed(str(status.get("error") or "")):
            raise AuthenticationUnavailable(
                "the apiserver could not check the token (its authenticator failed); retry later"
            )
        return TokenVerdict(None, "the bearer token is not valid")
    if audiences and not set(status.get("audiences") or ()) & set(audiences):
        return TokenVerdict(
            None, f"the bearer token is not meant for this API (audience {', '.join(audiences)})"
        )
    extra = user.get("extra") or {}
    return TokenVerdict(
        Caller(
            username=str(user["username"]),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(group) for group in user.get("groups") or ()),
            extra=tuple(
                sorted((str(key), tuple(str(v) for v in values)) for key, values in extra.items())
            ),
        )
    )


def heartbeat_access_review_body(
    caller: Caller, ref: SessionRef, *, whole_namespace: bool = False
) -> dict[str, Any]:
    """A SubjectAccessReview: may *caller* ``create sessions/heartbeat`` on *ref* (or, with
    *whole_namespace*, on every Session of its namespace)?"""
    spec: dict[str, Any] = {
        "user": caller.username,
        "groups": list(caller.groups),
        "resourceAttributes": {
            "namespace": ref.namespace,
            "verb": HEARTBEAT_VERB,
            "group": GROUP,
            "resource": PLURAL,
            "subresource": HEARTBEAT_SUBRESOURCE,
            **({} if whole_namespace else {"name": ref.name}),
        },
    }
    if caller.uid:
        spec["uid"] = caller.uid
    if caller.extra:
        spec["extra"] = {key: list(values) for key, values in caller.extra}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    }


# What an authenticator says when it could not judge a token (a webhook or OIDC provider
# down), as opposed to the reasons it gives for refusing one ("invalid bearer token",
# "token has expired", ...): the apiserver reports both in the same status.error field.
_AUTHENTICATOR_FAILURES = (
    "dial tcp",
    "connection refused",
    "connection reset",
    "deadline exceeded",
    "timeout",
    "timed out",
    "no such host",
    "eof",
    "tls:",
    "x509:",
    "unexpected status",
    "status code",
    "unavailable",
    "not initialized",
    "failed to query",
)


def authenticator_failed(error: str) -> bool:
    """Whether a TokenReview's ``status.error`` says the authenticator failed (a 503,
    retried) rather than that the token is bad (a 401)."""
    lowered = error.lower()
    return any(failure in lowered for failure in _AUTHENTICATOR_FAILURES)


def access_allowed(review: Mapping[str, Any]) -> bool:
    """Read the apiserver's answer to a SubjectAccessReview: allowed and not denied."""
    status = review.get("status") or {}
    return bool(status.get("allowed")) and not status.get("denied")


class Authenticator:
    """Bearer token → :class:`Caller`, by TokenReview, cached for the TTL."""

    def __init__(
        self,
        rest: Rest,
        audiences: Sequence[str],
        cache_ttl: timedelta,
        limiter: ReviewLimiter,
    ) -> None:
        self._rest = rest
        self._audiences = tuple(audiences)
        self._limiter = limiter
        self._verdicts: DecisionCache[bytes, TokenVerdict] = DecisionCache(
            cache_ttl.total_seconds(), is_refusal=lambda verdict: verdict.caller is None
        )

    async def authenticate(self, authorization: str | None, source: str) -> Caller:
        """The caller behind an ``Authorization`` header, sent from *source* (its address:
        a source's TokenReviews share one place in the review queue).

        Raises :class:`Unauthenticated` for a missing, malformed or refused token, and
        ``ApiUnavailable`` when the TokenReview cannot be made.
        """
        token = bearer_token(authorization)
        # The cache holds digests, never tokens.
        key = hashlib.sha256(token.encode()).digest()
        verdict = await self._verdicts.get_or_load(key, lambda: self._review(token, source))
        if verdict.caller is None:
            raise Unauthenticated(verdict.reason)
        return verdict.caller

    async def _review(self, token: str, source: str) -> TokenVerdict:
        body = token_review_body(token, self._audiences)
        answer = await self._limiter.run(
            lambda: self._rest.request("POST", TOKEN_REVIEWS, body=body), source
        )
        return token_verdict(answer, self._audiences)


class HeartbeatAuthorizer:
    """May a caller beat a session? SubjectAccessReviews, cached for the TTL.

    A caller is usually bound to ``session-heartbeat`` for a whole namespace, so the first
    question is whether it may beat every Session there: one review then serves all of them
    (a client beating many sessions costs one review per TTL, not one per session). Only
    when that is refused is the one session asked about (a RoleBinding may name Sessions).
    """

    def __init__(self, rest: Rest, cache_ttl: timedelta, limiter: ReviewLimiter) -> None:
        self._rest = rest
        self._limiter = limiter
        self._namespaces: DecisionCache[tuple[Caller, str], bool] = DecisionCache(
            cache_ttl.total_seconds(), is_refusal=lambda allowed: not allowed
        )
        self._sessions: DecisionCache[tuple[Caller, SessionRef], bool] = DecisionCache(
            cache_ttl.total_seconds(), is_refusal=lambda allowed: not allowed
        )

    async def authorize(self, caller: Caller, ref: SessionRef) -> None:
        """Return if *caller* may beat *ref*; raise :class:`Forbidden` if not.

        Raises ``ApiUnavailable`` when a SubjectAccessReview cannot be made.
        """
        allowed = await self._namespaces.get_or_load(
            (caller, ref.namespace), lambda: self._review(caller, ref, whole_namespace=True)
        ) or await self._sessions.get_or_load((caller, ref), lambda: self._review(caller, ref))
        if not allowed:
            # Not naming the namespace: on the sessionID path the caller did not name it.
            raise Forbidden(
                f'User "{caller.username}" cannot {HEARTBEAT_VERB} resource'
                f' "{PLURAL}/{HEARTBEAT_SUBRESOURCE}" in API group "{GROUP}" for this session'
            )

    async def _review(
        self, caller: Caller, ref: SessionRef, *, whole_namespace: bool = False
    ) -> bool:
        body = heartbeat_access_review_body(caller, ref, whole_namespace=whole_namespace)
        # An authenticated caller's reviews share one place in the queue, wherever it calls from.
        answer = await self._limiter.run(
            lambda: self._rest.request("POST", SUBJECT_ACCESS_REVIEWS, body=body),
            caller.username,
        )
        return access_allowed(answer)
