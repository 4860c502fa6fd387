"""Who is calling, and may they beat this session: TokenReview, then SubjectAccessReview.

A heartbeat carries ``Authorization: Bearer <token>``, usually a projected ServiceAccount
token. The apiserver says who it is (TokenReview, with the configured audiences) and whether
that identity may ``create`` ``sessions/heartbeat`` in group ``xg2g.io`` for this session
(SubjectAccessReview). Decisions are cached for ``authCacheTTL``, an accepted token no
longer than until it expires, and refusals for :data:`REFUSAL_SECONDS` at most, in a pool
of their own; at most a few reviews run at once (:mod:`session_operator.api.review_limit`).
A review that cannot be made raises ``ApiUnavailable`` (503), and one whose authenticator
reports an error raises :class:`AuthenticationUnavailable` (503, not cached): an outage is
never answered as 401 or 403. A token is accepted only if the apiserver confirms one of the
configured audiences, so a token minted for another audience is not replayable here, and a
heartbeat token is not one the apiserver itself accepts. Each token TokenReview refuses is
logged once, with the reason and the caller's address (never the token).

An accepted decision is renewed before it runs out, in the background, by a review that
never waits in the queue (:mod:`session_operator.api.decision_cache`): a heartbeat waits
for a review only for a token or caller not yet known, or one whose renewals failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
REFUSAL_SECONDS = 10.0
"""How long a refusal (an invalid token, a wrong audience, access denied) is kept at most:
a RoleBinding created after a first refused try works within seconds."""
# What the apiserver adds to a ServiceAccount token's identity about the credential rather
# than the principal: the token's own ID (its JTI, Kubernetes >= 1.30) and the Pod and Node
# it is bound to. Every token, and every Pod, has its own.
CREDENTIAL_EXTRAS = frozenset(
    {
        "authentication.kubernetes.io/credential-id",
        "authentication.kubernetes.io/pod-name",
        "authentication.kubernetes.io/pod-uid",
        "authentication.kubernetes.io/node-name",
        "authentication.kubernetes.io/node-uid",
    }
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """An authenticated identity, as TokenReview reports it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def principal(self) -> Caller:
        """The caller without the extras that describe its credential
        (:data:`CREDENTIAL_EXTRAS`): the same for every token of one ServiceAccount."""
        return replace(
            self, extra=tuple(item for item in self.extra if item[0] not in CREDENTIAL_EXTRAS)
        )


@dataclass(frozen=True)
class TokenVerdict:
    """What TokenReview said of a token: the caller, or why there is none; and when the
    token says it expires (seconds since the epoch, None if it does not say)."""

    caller: Caller | None
    reason: str = ""
    expires_at: float | None = None


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


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of *token* if it is a JWT, read WITHOUT checking its signature
    (seconds since the epoch); None for an opaque token or a missing or garbled claim.

    Anyone can write any ``exp``: it may only ever shorten how long a verdict is kept.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        expires_at = float(exp)
    except (ValueError, OverflowError):
        return None
    return expires_at if math.isfinite(expires_at) else None


def wrong_audience_reason(audiences: Sequence[str]) -> str:
    """Why a token minted for another audience is refused, and how to mint the right one."""
    expected = " or ".join(audiences)
    return (
        f"the bearer token is not meant for this API: its audience must be {expected};"
        f" mint one with 'kubectl create token <serviceaccount> --audience {audiences[0]}'"
        " or a projected serviceAccountToken volume with that audience"
    )


def token_verdict(review: Mapping[str, Any], audiences: Sequence[str]) -> TokenVerdict:
    """Read the apiserver's answer to a TokenReview that asked for *audiences*.

    A token minted for another audience is refused saying which one is expected: the
    apiserver refuses it with an error naming the audiences ("token audiences [...] is
    invalid for the target audiences [...]"), or, where an authenticator ignores the
    audiences asked for, accepts it for audiences that are not these.

    Raises :class:`AuthenticationUnavailable` when the authenticator failed rather than
    judged the token (see :func:`authenticator_failed`).
    """
    status = review.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        error = str(status.get("error") or "")
        # Judged, even if another authenticator of the union failed beside it.
        if audiences and "audience" in error.lower():
            return TokenVerdict(None, wrong_audience_reason(audiences))
        if authenticator_failed(error):
            raise AuthenticationUnavailable(
                "the apiserver could not check the token (its authenticator failed); retry later"
            )
        return TokenVerdict(None, "the bearer token is not valid")
    if audiences and not set(status.get("audiences") or ()) & set(audiences):
        return TokenVerdict(None, wrong_audience_reason(audiences))
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
    """Bearer token → :class:`Caller`, by TokenReview.

    An accepted token is kept for the TTL or until its own ``exp`` (:func:`token_expiry`),
    whichever comes first, less up to a tenth at random; one already expired is not kept.
    In the last tenth of a TTL-long verdict, a heartbeat is answered from the cache and
    starts a TokenReview in the background: a revoked token is then refused as soon as that
    review answers, at most one review's duration later than a review at expiry would have
    refused it. With thousands of clients, each with its own token, that is one TokenReview
    per token every nine tenths of the TTL or so: at the default 3 minutes and a 5 s
    interval, about 5/156 reviews per heartbeat. A refusal is kept :data:`REFUSAL_SECONDS`
    at most. *clock* times the cache (monotonic), *wall_clock* (seconds since the epoch) is
    what a token's ``exp`` is compared with, *draw* gives the jitter's fractions in [0, 1).
    """

    def __init__(
        self,
        rest: Rest,
        audiences: Sequence[str],
        cache_ttl: timedelta,
        limiter: ReviewLimiter,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._rest = rest
        self._audiences = tuple(audiences)
        self._limiter = limiter
        self._wall_clock = wall_clock
        self._verdicts: DecisionCache[bytes, TokenVerdict] = DecisionCache(
            cache_ttl.total_seconds(),
            clock=clock,
            is_refusal=lambda verdict: verdict.caller is None,
            lifetime=self._lifetime,
            draw=draw,
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
        verdict = await self._verdicts.get_or_load(
            key,
            lambda: self._review(token, source),
            refresh=lambda: self._review(token, source, wait=False),
        )
        if verdict.caller is None:
            raise Unauthenticated(verdict.reason)
        return verdict.caller

    async def _review(self, token: str, source: str, *, wait: bool = True) -> TokenVerdict:
        body = token_review_body(token, self._audiences)
        answer = await self._limiter.run(
            lambda: self._rest.request("POST", TOKEN_REVIEWS, body=body), source, wait=wait
        )
        verdict = token_verdict(answer, self._audiences)
        if verdict.caller is None:
            # Once per review: a cached refusal is not logged again.
            logger.warning("refused a bearer token from %s: %s", source or "?", verdict.reason)
            return verdict
        return replace(verdict, expires_at=token_expiry(token))

    def _lifetime(self, verdict: TokenVerdict) -> float:
        if verdict.caller is None:
            return REFUSAL_SECONDS
        if verdict.expires_at is None:
            return math.inf
        return verdict.expires_at - self._wall_clock()


class HeartbeatAuthorizer:
    """May a caller beat a session? SubjectAccessReviews, cached for the TTL less up to a
    tenth at random, and renewed in the background in its last tenth like a token's
    verdict (a refusal kept for :data:`REFUSAL_SECONDS` at most, and not renewed ahead).

    A caller is usually bound to ``session-heartbeat`` for a whole namespace, so the first
    question is whether it may beat every Session there: one review then serves all of them
    (a client beating many sessions costs one review per TTL, not one per session). Only
    when that is refused is the one session asked about (a RoleBinding may name Sessions).

    Decisions are kept per principal (:attr:`Caller.principal`), not per credential: the
    apiserver puts each token's own ID, and the Pod and Node it is bound to, into the
    caller's extras, so keyed on the whole caller every token of one ServiceAccount would
    cost a review of its own. RBAC never reads extras, so its answer is the same for all of
    them; the reviews sent still carry the caller's extras. The price: an authorizer
    webhook that judges individual credentials (by those extras) would see the answer for
    the first credential of a principal reused for the others, for the TTL.
    """

    def __init__(
        self,
        rest: Rest,
        cache_ttl: timedelta,
        limiter: ReviewLimiter,
        *,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._rest = rest
        self._limiter = limiter
        self._namespaces: DecisionCache[tuple[Caller, str], bool] = DecisionCache(
            cache_ttl.total_seconds(),
            clock=clock,
            is_refusal=_refused,
            lifetime=_access_lifetime,
            draw=draw,
        )
        self._sessions: DecisionCache[tuple[Caller, SessionRef], bool] = DecisionCache(
            cache_ttl.total_seconds(),
            clock=clock,
            is_refusal=_refused,
            lifetime=_access_lifetime,
            draw=draw,
        )

    async def authorize(self, caller: Caller, ref: SessionRef) -> None:
        """Return if *caller* may beat *ref*; raise :class:`Forbidden` if not.

        Raises ``ApiUnavailable`` when a SubjectAccessReview cannot be made.
        """
        principal = caller.principal
        allowed = await self._namespaces.get_or_load(
            (principal, ref.namespace),
            lambda: self._review(caller, ref, whole_namespace=True),
            refresh=lambda: self._review(caller, ref, whole_namespace=True, wait=False),
        ) or await self._sessions.get_or_load(
            (principal, ref),
            lambda: self._review(caller, ref),
            refresh=lambda: self._review(caller, ref, wait=False),
        )
        if not allowed:
            # Not naming the namespace: on the sessionID path the caller did not name it.
            raise Forbidden(
                f'User "{caller.username}" cannot {HEARTBEAT_VERB} resource'
                f' "{PLURAL}/{HEARTBEAT_SUBRESOURCE}" in API group "{GROUP}" for this session'
            )

    async def _review(
        self, caller: Caller, ref: SessionRef, *, whole_namespace: bool = False, wait: bool = True
    ) -> bool:
        body = heartbeat_access_review_body(caller, ref, whole_namespace=whole_namespace)
        # An authenticated caller's reviews share one place in the queue, wherever it calls from.
        answer = await self._limiter.run(
            lambda: self._rest.request("POST", SUBJECT_ACCESS_REVIEWS, body=body),
            caller.username,
            wait=wait,
        )
        return access_allowed(answer)


def _refused(allowed: bool) -> bool:
    return not allowed


def _access_lifetime(allowed: bool) -> float:
    return math.inf if allowed else REFUSAL_SECONDS
