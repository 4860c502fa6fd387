"""What the heartbeat API costs the apiserver per heartbeat: how long each verdict is kept
(the TTL, a token's own expiry, a refusal's ten seconds), when it is renewed (in the
background, in the last tenth of the TTL), one access review per principal rather than
per token, and one log line per refused token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from session_operator.api.auth import (
    Authenticator,
    Caller,
    HeartbeatAuthorizer,
    token_expiry,
    token_verdict,
)
from session_operator.api.decision_cache import DecisionCache
from session_operator.api.errors import Forbidden, Unauthenticated
from session_operator.api.review_limit import ReviewLimiter
from session_operator.k8s.errors import ApiUnavailable
from session_operator.models import SessionRef
from tests.unit.builders import FakeRest

pytestmark = pytest.mark.unit

TTL = timedelta(minutes=2)
EPOCH = 1_800_000_000.0
AUDIENCE = "session-lease-operator"
REF = SessionRef(namespace="media", name="living-room")
USERNAME = "system:serviceaccount:media:player"
# What a real apiserver (v1.37) answers for a token minted for its own audience.
WRONG_AUDIENCE_ERROR = (
    '[invalid bearer token, token audiences ["https://kubernetes.default.svc.cluster.local"]'
    ' is invalid for the target audiences ["session-lease-operator"]]'
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def no_jitter() -> float:
    """A jitter draw that takes nothing off: every verdict is kept its whole lifetime."""
    return 0.0


def reviews(status: dict[str, Any], count: int = 20) -> FakeRest:
    """An apiserver that answers *count* reviews with *status*."""
    return FakeRest([{"status": status} for _ in range(count)])


def jwt(claims: object) -> str:
    """A JWT-shaped token with *claims* and no valid signature (none is checked here)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((segment(b'{"alg":"RS256"}'), segment(json.dumps(claims).encode()), "c2ln"))


ACCEPTED = {
    "authenticated": True,
    "audiences": [AUDIENCE],
    "user": {
        "username": USERNAME,
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=1"]},
    },
}


def authenticator(
    status: dict[str, Any], rest: FakeRest | None = None, limiter: ReviewLimiter | None = None
) -> tuple[Authenticator, FakeRest, Clock]:
    """An authenticator (answered with *status*, or by *rest*) without jitter, whose cache
    clock starts at 0 and whose wall clock reads EPOCH plus the same seconds."""
    rest, clock = rest or reviews(status), Clock()
    found = Authenticator(
        rest,
        [AUDIENCE],
        TTL,
        limiter or ReviewLimiter(),
        clock=clock,
        wall_clock=lambda: EPOCH + clock.now,
        draw=no_jitter,
    )
    return found, rest, clock


async def beats_until(
    auth: Authenticator, rest: FakeRest, clock: Clock, token: str, seconds: list[float]
) -> list[int]:
    """Authenticate *token* at each of *seconds*; the reviews made so far after each."""
    counts = []
    for at in seconds:
        clock.now = at
        with contextlib.suppress(Unauthenticated):
            await auth.authenticate(f"Bearer {token}", "10.0.0.7")
        await let_background_run()
        counts.append(len(rest.requests))
    return counts


async def let_background_run() -> None:
    """Give reviews started in the background a few turns of the event loop."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- the cache: a lifetime per value ------------------------------------------------------


def test_a_value_is_kept_for_its_own_lifetime_when_shorter_than_the_ttl() -> None:
    clock = Clock()
    cache: DecisionCache[str, float] = DecisionCache(
        ttl=120, clock=clock, lifetime=lambda v: v, jitter=0
    )
    cache.put("short", 30)
    cache.put("long", 600)
    clock.now = 29.999
    assert (cache.get("short"), cache.get("long")) == (30, 600)
    clock.now = 30
    assert cache.get("short") is None
    clock.now = 119.999
    assert cache.get("long") == 600
    clock.now = 120
    assert cache.get("long") is None


@pytest.mark.parametrize("lifetime", [0.0, -5.0])
def test_a_value_whose_lifetime_is_over_is_not_kept_and_replaces_none(lifetime: float) -> None:
    cache: DecisionCache[str, float] = DecisionCache(ttl=120, lifetime=lambda v: v)
    cache.put("k", 60)
    cache.put("k", lifetime)
    assert cache.get("k") is None
    assert len(cache) == 0


# --- token verdicts: until the token expires, refusals ten seconds --------------------------


def test_token_expiry_reads_the_exp_claim_without_a_signature_check() -> None:
    assert token_expiry(jwt({"exp": 1_800_000_030})) == 1_800_000_030
    assert token_expiry(jwt({"exp": 1_800_000_030.5})) == 1_800_000_030.5


@pytest.mark.parametrize(
    "token",
    [
        "opaque-token-of-an-sso-user",
        "a.b",
        "a.b.c.d.e",
        "header.!!!not-base64!!!.sig",
        "header." + base64.urlsafe_b64encode(b"not json").decode().rstrip("=") + ".sig",
        jwt(["exp", 1]),
        jwt({"sub": "no exp"}),
        jwt({"exp": "1800000030"}),
        jwt({"exp": True}),
        jwt({"exp": None}),
        jwt({"exp": 10**400}),
        "h." + base64.urlsafe_b64encode(b'{"exp": 1e999}').decode().rstrip("=") + ".s",
        "h." + base64.urlsafe_b64encode(b'{"exp": NaN}').decode().rstrip("=") + ".s",
    ],
)
def test_an_opaque_token_or_a_missing_or_garbled_exp_has_no_expiry(token: str) -> None:
    assert token_expiry(token) is None


async def test_an_accepted_token_is_kept_until_it_expires_when_sooner_than_the_ttl() -> None:
    auth, rest, clock = authenticator(ACCEPTED)
    token = jwt({"exp": EPOCH + 30})
    # Not renewed ahead either: a new review could not keep it past its exp.
    assert await beats_until(auth, rest, clock, token, [0, 5, 29.9, 30]) == [1, 1, 1, 2]


async def test_an_accepted_token_is_kept_for_the_ttl_when_it_lives_longer() -> None:
    auth, rest, clock = authenticator(ACCEPTED)
    token = jwt({"exp": EPOCH + 3600})
    # No beat in the last tenth (from 108 s): nothing renews it before it runs out.
    seconds = [0, 5, 60, 107.9, 120, 125]
    assert await beats_until(auth, rest, clock, token, seconds) == [1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("token", ["opaque-token", jwt({"sub": "x"}), "h.%%%.s"])
async def test_a_token_without_a_readable_expiry_is_kept_for_the_ttl(token: str) -> None:
    auth, rest, clock = authenticator(ACCEPTED)
    assert await beats_until(auth, rest, clock, token, [0, 107.9, 120]) == [1, 1, 2]


async def test_a_beat_in_the_last_tenth_of_the_ttl_renews_the_verdict_in_the_background() -> None:
    auth, rest, clock = authenticator(ACCEPTED)
    token = jwt({"exp": EPOCH + 3600})
    # Renewed at 110 s, then kept until 230 s and renewed again from 218 s.
    seconds = [0, 110, 115, 119.9, 125, 217.9, 218, 223]
    assert await beats_until(auth, rest, clock, token, seconds) == [1, 2, 2, 2, 2, 2, 3, 3]


async def test_a_renewal_that_fails_leaves_the_verdict_until_it_runs_out() -> None:
    answers: list[dict[str, Any] | Exception] = [
        {"status": ACCEPTED},
        ApiUnavailable("timeout"),
        ApiUnavailable("timeout"),
        {"status": ACCEPTED},
    ]
    auth, rest, clock = authenticator(ACCEPTED, rest=FakeRest(answers))
    token = jwt({"exp": EPOCH + 3600})
    # Every beat is answered (beats_until lets any failure through but a 401); the beat at
    # 120 s finds the verdict run out and waits for a review.
    seconds: list[float] = [0, 110, 115, 120, 125]
    assert await beats_until(auth, rest, clock, token, seconds) == [1, 2, 3, 4, 4]


async def test_a_token_revoked_before_its_renewal_is_refused_once_the_renewal_answers() -> None:
    refused = {"status": {"authenticated": False, "error": "invalid bearer token"}}
    auth, rest, clock = authenticator(ACCEPTED, rest=FakeRest([{"status": ACCEPTED}, refused]))
    token = "opaque-token"
    await auth.authenticate(f"Bearer {token}", "10.0.0.7")
    clock.now = 110
    await auth.authenticate(f"Bearer {token}", "10.0.0.7")  # answered from the cache
    await let_background_run()
    clock.now = 111
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {token}", "10.0.0.7")
    assert len(rest.requests) == 2


async def test_a_renewal_never_takes_a_place_in_the_review_queue() -> None:
    limiter = ReviewLimiter(concurrent=1, waiting=1)
    rest = FakeRest([{"status": ACCEPTED} for _ in range(3)])
    auth, _, clock = authenticator(ACCEPTED, rest=rest, limiter=limiter)
    await auth.authenticate("Bearer known", "10.0.0.7")
    release = asyncio.Event()

    async def slow_review() -> None:
        await release.wait()

    busy = asyncio.create_task(limiter.run(slow_review, "10.0.0.99"))  # the only slot
    await let_background_run()
    clock.now = 110
    # In the last tenth: answered at once, its renewal refused for want of a free slot.
    await asyncio.wait_for(auth.authenticate("Bearer known", "10.0.0.7"), timeout=1)
    await let_background_run()
    # A new client's first review still finds the one waiting place free.
    newcomer = asyncio.create_task(auth.authenticate("Bearer new", "10.0.0.8"))
    await let_background_run()
    assert not newcomer.done()
    release.set()
    await busy
    assert (await newcomer).username == USERNAME
    assert len(rest.requests) == 2


async def test_a_token_already_expired_by_its_own_claim_is_not_kept() -> None:
    auth, rest, clock = authenticator(ACCEPTED)
    token = jwt({"exp": EPOCH - 1})
    # The apiserver's word stands for this request; the next asks again.
    assert await beats_until(auth, rest, clock, token, [0, 0.1, 0.2]) == [1, 2, 3]


async def test_a_refused_token_is_kept_ten_seconds_only_and_never_renewed_ahead() -> None:
    auth, rest, clock = authenticator({"authenticated": False, "error": "invalid bearer token"})
    token = jwt({"exp": EPOCH + 3600})
    assert await beats_until(auth, rest, clock, token, [0, 9.9, 10, 15]) == [1, 1, 2, 2]


async def test_a_refusal_is_kept_no_longer_than_a_shorter_ttl() -> None:
    rest, clock = reviews({"authenticated": False}), Clock()
    auth = Authenticator(rest, [AUDIENCE], timedelta(seconds=1), ReviewLimiter(), clock=clock)
    assert await beats_until(auth, rest, clock, "opaque", [0, 0.9, 1]) == [1, 1, 2]


# --- access reviews: one per principal and namespace ---------------------------------------


def caller_of_pod(number: int, **other_extras: tuple[str, ...]) -> Caller:
    """The caller a pod-bound token of ServiceAccount media/player names (Kubernetes 1.30+)."""
    extras = {
        "authentication.kubernetes.io/credential-id": (f"JTI={number}",),
        "authentication.kubernetes.io/pod-name": (f"player-{number}",),
        "authentication.kubernetes.io/pod-uid": (f"pod-uid-{number}",),
        "authentication.kubernetes.io/node-name": (f"node-{number % 3}",),
        "authentication.kubernetes.io/node-uid": (f"node-uid-{number % 3}",),
        **other_extras,
    }
    return Caller(
        username=USERNAME,
        uid="sa-uid",
        groups=("system:serviceaccounts", "system:authenticated"),
        extra=tuple(sorted(extras.items())),
    )


async def test_every_token_of_one_service_account_shares_one_access_review() -> None:
    rest = reviews({"allowed": True})
    authorizer = HeartbeatAuthorizer(rest, TTL, ReviewLimiter())
    for number in range(50):
        await authorizer.authorize(caller_of_pod(number), REF)
    assert len(rest.requests) == 1
    # The review sent still carries the caller's own extras.
    extra = rest.requests[0][2]["spec"]["extra"]
    assert extra["authentication.kubernetes.io/credential-id"] == ["JTI=0"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["player-0"]


async def test_extras_that_describe_the_principal_still_tell_callers_apart() -> None:
    rest = reviews({"allowed": True})
    authorizer = HeartbeatAuthorizer(rest, TTL, ReviewLimiter())
    await authorizer.authorize(caller_of_pod(1, scopes=("a",)), REF)
    await authorizer.authorize(caller_of_pod(2, scopes=("b",)), REF)
    await authorizer.authorize(Caller(username="system:serviceaccount:media:other"), REF)
    assert len(rest.requests) == 3


async def test_a_denied_access_is_asked_again_after_ten_seconds() -> None:
    denied, allowed = {"status": {"allowed": False}}, {"status": {"allowed": True}}
    # A RoleBinding is created after the first two reviews.
    rest, clock = FakeRest([denied, denied, allowed]), Clock()
    authorizer = HeartbeatAuthorizer(rest, TTL, ReviewLimiter(), clock=clock, draw=no_jitter)
    caller = caller_of_pod(1)
    with pytest.raises(Forbidden):
        await authorizer.authorize(caller, REF)  # the namespace, then the session
    clock.now = 9.9
    with pytest.raises(Forbidden):
        await authorizer.authorize(caller, REF)
    assert len(rest.requests) == 2
    clock.now = 10
    await authorizer.authorize(caller, REF)
    assert len(rest.requests) == 3
    clock.now = 107.9  # the allowance is kept: not yet in its last tenth
    await authorizer.authorize(caller, REF)
    await let_background_run()
    assert len(rest.requests) == 3


async def test_an_allowed_access_is_renewed_in_the_background_and_a_removal_shows() -> None:
    allowed, denied = {"status": {"allowed": True}}, {"status": {"allowed": False}}
    # The RoleBinding is removed after the first review.
    rest, clock = FakeRest([allowed, denied, denied]), Clock()
    authorizer = HeartbeatAuthorizer(rest, TTL, ReviewLimiter(), clock=clock, draw=no_jitter)
    caller = caller_of_pod(1)
    await authorizer.authorize(caller, REF)
    clock.now = 110
    # Answered from the cache at once; the renewal runs behind it.
    await asyncio.wait_for(authorizer.authorize(caller, REF), timeout=1)
    await let_background_run()
    assert len(rest.requests) == 2
    clock.now = 111
    with pytest.raises(Forbidden):
        await authorizer.authorize(caller, REF)  # the namespace is cached refused: the session
    assert len(rest.requests) == 3


# --- a refused token: one log line, and how to mint the right one ---------------------------


def test_a_token_for_another_audience_is_told_which_one_and_how_to_mint_it() -> None:
    status = {"authenticated": False, "user": {}, "error": WRONG_AUDIENCE_ERROR}
    verdict = token_verdict({"status": status}, [AUDIENCE])
    assert verdict.caller is None
    assert f"must be {AUDIENCE}" in verdict.reason
    assert f"kubectl create token <serviceaccount> --audience {AUDIENCE}" in verdict.reason


def test_the_configured_audiences_are_the_ones_named() -> None:
    status = {"authenticated": True, "audiences": ["other"], "user": {"username": "u"}}
    reason = token_verdict({"status": status}, ["aud-a", "aud-b"]).reason
    assert "must be aud-a or aud-b" in reason
    assert "--audience aud-a" in reason


async def test_a_refused_token_is_logged_once_with_its_reason_and_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth, rest, clock = authenticator({"authenticated": False, "error": WRONG_AUDIENCE_ERROR})
    token = jwt({"exp": EPOCH + 3600, "sub": "system:serviceaccount:media:player"})
    with caplog.at_level(logging.WARNING, logger="session_operator.api.auth"):
        with pytest.raises(Unauthenticated) as refused:
            await auth.authenticate(f"Bearer {token}", "10.0.0.7")
        clock.now = 5
        with pytest.raises(Unauthenticated):
            await auth.authenticate(f"Bearer {token}", "10.0.0.7")  # the cached refusal
    assert len(rest.requests) == 1
    assert "--audience session-lease-operator" in str(refused.value)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert "10.0.0.7" in line
    assert "--audience session-lease-operator" in line
    for part in token.split("."):
        assert part not in line


async def test_an_accepted_token_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    auth, _, _ = authenticator(ACCEPTED)
    with caplog.at_level(logging.WARNING, logger="session_operator.api.auth"):
        await auth.authenticate("Bearer opaque", "10.0.0.7")
    assert caplog.records == []
