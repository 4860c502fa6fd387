"""The SessionPolicies of a namespace: merged into one set of defaults and bounds, and the
precedence of a new Session's values (its own field > the policy's default > the
configuration, brought within the policy's bounds), told in the Event that initialises
it; the reconciler reads the policies once, when it initialises a Session."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from session_operator.api.admission import AdmissionRoutes
from session_operator.api.server import webhook_app
from session_operator.controller.reconciler import Kubernetes, Reconciler
from session_operator.k8s.errors import ApiUnavailable, NotFound
from session_operator.k8s.session_policies import SessionPolicyApi
from session_operator.lifecycle import InitialiseStatus, LifecycleSettings, next_step
from session_operator.models import Session, SessionRef
from session_operator.session_policy import (
    Bounds,
    SessionPolicy,
    duration_default,
    lease_defaults,
    max_hold_in_force,
    merged,
    within_policy,
)
from tests.unit.builders import (
    CREATED_AT,
    SETTINGS,
    TEMPLATE,
    FakeRest,
    listed_pods,
    make_body,
    stored,
)
from tests.unit.test_reconciler import Events, NoPods, Owned, StoredSession


def policy(name: str, **spec: Any) -> SessionPolicy:
    """A SessionPolicy *name* in namespace media with *spec*."""
    return SessionPolicy.from_body({"metadata": {"name": name, "namespace": "media"}, "spec": spec})


GPU_LIMITS = policy(
    "gpu-limits",
    lease={
        "ttlSeconds": {"default": 300, "min": 30, "max": 3600},
        "heartbeatIntervalSeconds": {"default": 10, "min": 5, "max": 60},
        "maxLifetimeSeconds": {"max": 86400},
    },
    startTimeoutSeconds={"default": 120, "max": 600},
)


def initialised(spec: dict[str, Any], settings: LifecycleSettings) -> InitialiseStatus:
    """What the lifecycle writes first for a new Session with *spec*."""
    step = next_step(Session.from_body(make_body(spec=spec)), CREATED_AT, settings, None)
    assert isinstance(step, InitialiseStatus)
    return step


# --- Merging the policies of a namespace ---------------------------------------------


def test_a_policy_is_decoded_from_its_body() -> None:
    assert GPU_LIMITS.spec.lease.ttl_seconds == Bounds(default=300, min=30, max=3600)
    assert GPU_LIMITS.spec.lease.max_lifetime_seconds == Bounds(max=86400)
    assert GPU_LIMITS.spec.start_timeout_seconds == Bounds(default=120, max=600)
    assert policy("empty").spec.lease.ttl_seconds == Bounds()


def test_every_policy_applies_the_tightest_bounds_and_the_first_default_by_name() -> None:
    loose = policy("a-loose", lease={"ttlSeconds": {"min": 10, "max": 7200}})
    tight = policy("b-tight", lease={"ttlSeconds": {"default": 600, "min": 60, "max": 900}})

    namespace = merged([tight, loose])

    assert namespace.names == ("a-loose", "b-tight")
    assert namespace.ttl == Bounds(default=600, min=60, max=900)
    first = policy("a-first", lease={"ttlSeconds": {"default": 120}})
    assert merged([tight, first]).ttl.default == 120


def test_no_policy_leaves_the_configuration_as_it_is() -> None:
    assert within_policy(SETTINGS, merged([])) is SETTINGS


# --- Precedence: the Session's field, the policy's default, the configuration ---------


def test_a_policy_default_applies_to_a_session_that_leaves_the_field_out() -> None:
    settings = within_policy(SETTINGS, merged([GPU_LIMITS]))

    step = initialised({"template": TEMPLATE}, settings)

    assert (step.status["leaseTTLSeconds"], step.status["heartbeatInterval"]) == (300, 10)
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:05:00.123Z"
    assert step.status["startDeadline"] == "2026-11-23T10:02:00.123Z"  # 120 s, not 10 min
    # No maximum lifetime asked for, none configured: the policy's maximum is the lifetime.
    assert step.status["lifetimeEndsAt"] == "2026-11-24T10:00:00.123Z"


def test_a_session_field_wins_over_the_policy_default() -> None:
    settings = within_policy(SETTINGS, merged([GPU_LIMITS]))
    spec = {
        "lease": {"ttlSeconds": 90, "heartbeatIntervalSeconds": 30, "maxLifetimeSeconds": 3600},
        "template": TEMPLATE,
        "startTimeoutSeconds": 300,
    }

    step = initialised(spec, settings)

    assert (step.status["leaseTTLSeconds"], step.status["heartbeatInterval"]) == (90, 30)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T11:00:00.123Z"
    assert step.status["startDeadline"] == "2026-11-23T10:05:00.123Z"


def test_without_a_policy_default_the_configuration_is_brought_within_the_bounds() -> None:
    short = policy("short", lease={"ttlSeconds": {"max": 30}}, startTimeoutSeconds={"min": 900})

    step = initialised({"template": TEMPLATE}, within_policy(SETTINGS, merged([short])))

    # The configured 60 s TTL is cut to 30 s; its 5 s interval stands (30 >= 3 x 5).
    assert (step.status["leaseTTLSeconds"], step.status["heartbeatInterval"]) == (30, 5)
    # The configured 10 min start timeout is raised to the policy's 15 min minimum.
    assert step.status["startDeadline"] == "2026-11-23T10:15:00.123Z"


def test_the_configuration_applies_where_the_policy_says_nothing() -> None:
    quiet = policy("quiet", lease={"maxLifetimeSeconds": {"min": 60}})

    step = initialised({}, within_policy(SETTINGS, merged([quiet])))

    assert (step.status["leaseTTLSeconds"], step.status["heartbeatInterval"]) == (60, 5)
    assert "lifetimeEndsAt" not in step.status  # a minimum alone sets no lifetime


def test_the_operator_bound_still_cuts_a_policy_default() -> None:
    generous = policy("generous", lease={"maxLifetimeSeconds": {"default": 86400}})
    bounded = dataclasses.replace(SETTINGS, max_lifetime_bound=timedelta(hours=1))

    step = initialised({}, within_policy(bounded, merged([generous])))

    assert step.status["lifetimeEndsAt"] == "2026-11-23T11:00:00.123Z"


def test_the_event_names_the_policies_whose_defaults_apply() -> None:
    other = policy("a-other", startTimeoutSeconds={"max": 900})

    step = initialised({}, within_policy(SETTINGS, merged([GPU_LIMITS, other])))

    assert step.event_note == (
        "session ready, lease expires at 2026-11-23T10:05:00.123Z, never past"
        " 2026-11-24T10:00:00.123Z (maximum lifetime 24h); defaults and bounds from"
        " SessionPolicy a-other, gpu-limits"
    )
    assert "SessionPolicy" not in initialised({}, SETTINGS).event_note


# --- The lease pair and the durations, within the bounds ------------------------------


def test_a_raised_interval_raises_the_ttl_to_three_intervals() -> None:
    slow = merged([policy("slow", lease={"heartbeatIntervalSeconds": {"min": 30}})])

    assert lease_defaults(slow, timedelta(seconds=60), timedelta(seconds=5)) == (90, 30)


def test_contradicting_policies_still_give_a_ttl_of_three_intervals() -> None:
    # Each is valid alone; together no lease meets both (40 < 3 x 15): the TTL's maximum
    # holds and the interval gives way.
    capped = policy("capped", lease={"ttlSeconds": {"max": 40}})
    slow = policy("slow", lease={"heartbeatIntervalSeconds": {"min": 15}})

    ttl, interval = lease_defaults(
        merged([capped, slow]), timedelta(seconds=60), timedelta(seconds=5)
    )

    assert (ttl, interval) == (40, 13)


def test_a_policy_default_pair_is_taken_whole() -> None:
    assert lease_defaults(merged([GPU_LIMITS]), timedelta(seconds=60), timedelta(seconds=5)) == (
        300,
        10,
    )


def test_a_duration_default_is_brought_within_the_bounds() -> None:
    hour = timedelta(hours=1)
    assert duration_default(Bounds(max=600), hour) == timedelta(minutes=10)
    assert duration_default(Bounds(min=7200), hour) == timedelta(hours=2)
    assert duration_default(Bounds(min=60, max=7200), hour) == hour
    assert duration_default(Bounds(default=300, max=600), hour) == timedelta(minutes=5)
    # No limit configured: the maximum, if any, is the limit.
    assert duration_default(Bounds(max=600), None) == timedelta(minutes=10)
    assert duration_default(Bounds(min=600), None) is None


# --- Read once, when a Session is initialised -----------------------------------------


class Policies(SessionPolicyApi):
    """The policies of every namespace, and the namespaces asked for."""

    def __init__(self, *policies: SessionPolicy) -> None:
        self.policies = list(policies)
        self.asked: list[str] = []

    async def list(self, namespace: str) -> list[SessionPolicy]:
        self.asked.append(namespace)
        return self.policies


class NewSession(StoredSession):
    """A Session not initialised yet, whose first status write is stored whole."""

    async def write_status_at_version(
        self, ref: SessionRef, status: Mapping[str, Any], resource_version: str
    ) -> Session:
        return self._write("status", [{"op": "add", "path": "/status", "value": dict(status)}])


def reconciler_with(sessions: StoredSession, policies: Policies) -> Reconciler:
    kube = Kubernetes(sessions, NoPods(), Owned([]), Events(), policies)
    return Reconciler(kube, listed_pods(), SETTINGS, lambda: CREATED_AT)


async def test_the_reconciler_initialises_a_session_with_its_namespace_policy() -> None:
    sessions = NewSession(make_body())
    policies = Policies(GPU_LIMITS)

    await reconciler_with(sessions, policies).reconcile(Session.from_body(sessions.body))

    assert sessions.body["status"]["leaseTTLSeconds"] == 300
    assert policies.asked == ["media"]  # once: the label write after it reads none


async def test_an_initialised_session_reads_no_policy() -> None:
    sessions = StoredSession(stored())
    policies = Policies(GPU_LIMITS)

    await reconciler_with(sessions, policies).reconcile(Session.from_body(sessions.body))

    assert policies.asked == []


async def test_policies_are_listed_in_the_session_namespace() -> None:
    item = {"metadata": {"name": "gpu-limits"}, "spec": {"lease": {"ttlSeconds": {"max": 60}}}}
    rest = FakeRest([{"items": [item], "metadata": {"resourceVersion": "7"}}])

    listed = await SessionPolicyApi(rest).list("ml")

    assert [p.name for p in listed] == ["gpu-limits"]
    assert listed[0].spec.lease.ttl_seconds == Bounds(max=60)
    method, path, _ = rest.requests[0]
    assert (method, path) == ("GET", "/apis/xg2g.io/v1alpha1/namespaces/ml/sessionpolicies")


async def test_without_the_session_policy_crd_there_is_no_policy() -> None:
    assert (
        await SessionPolicyApi(FakeRest([NotFound("the server could not find")])).list("ml") == []
    )


async def test_an_unreachable_apiserver_holds_the_initialisation_back() -> None:
    rest = FakeRest([ApiUnavailable("connection refused")])
    sessions = NewSession(make_body())
    kube = Kubernetes(sessions, NoPods(), Owned([]), Events(), SessionPolicyApi(rest))
    reconciler = Reconciler(kube, listed_pods(), SETTINGS, lambda: CREATED_AT)

    with pytest.raises(ApiUnavailable):  # retried by the controller
        await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.writes == []  # never initialised without its namespace's policies


# --- The hold's bound, in the admission webhook ----------------------------------------

MAX_HOLD = timedelta(hours=8)
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
OPERATORS = "the operator's maxHold"


def test_the_shortest_hold_of_the_operator_and_the_policies_applies() -> None:
    hour = policy("b-hour", maxHoldSeconds=3600)
    minutes = policy("a-minutes", maxHoldSeconds=600)
    generous = policy("generous", maxHoldSeconds=86400)
    named = "the maxHoldSeconds of SessionPolicy {} in namespace ml"

    assert max_hold_in_force([], MAX_HOLD, "ml") == (MAX_HOLD, OPERATORS)
    assert max_hold_in_force([GPU_LIMITS], MAX_HOLD, "ml") == (MAX_HOLD, OPERATORS)
    assert max_hold_in_force([hour], MAX_HOLD, "ml") == (timedelta(hours=1), named.format("b-hour"))
    assert max_hold_in_force([hour, minutes], MAX_HOLD, "ml") == (
        timedelta(minutes=10),
        named.format("a-minutes"),
    )
    # A policy narrows the operator's bound, never lifts it.
    assert max_hold_in_force([generous], MAX_HOLD, "ml") == (MAX_HOLD, OPERATORS)
    assert max_hold_in_force([policy("none", maxHoldSeconds=0)], MAX_HOLD, "ml")[0] == timedelta(0)


def hold_review(until: str | None, namespace: str = "media") -> dict[str, Any]:
    """The review of a Session created with a hold until *until* (``None``: no hold)."""
    spec = {} if until is None else {"hold": {"until": until}}
    obj = {"kind": "Session", "metadata": {"name": "s", "namespace": namespace}, "spec": spec}
    request = {"uid": "r-1", "operation": "CREATE", "namespace": namespace, "object": obj}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def answers(policies: SessionPolicyApi, *reviews: dict[str, Any]) -> list[Any]:
    """What the webhook, reading its SessionPolicies from *policies*, answers to each of
    *reviews* at NOW: the review's response, or the HTTP status of a failed call."""
    routes = AdmissionRoutes(128 * 1024, MAX_HOLD, lambda: NOW, policies)
    found: list[Any] = []
    async with TestClient(TestServer(webhook_app(routes))) as client:
        for review in reviews:
            reply = await client.post("/admission/sessions", json=review)
            found.append((await reply.json())["response"] if reply.ok else reply.status)
    return found


async def test_a_hold_beyond_the_namespace_policy_is_refused_naming_the_policy() -> None:
    policies = Policies(policy("gpu-limits", maxHoldSeconds=3600))

    beyond, within = await answers(
        policies, hold_review("2026-12-06T12:00:00Z"), hold_review("2026-12-06T11:00:00Z")
    )

    assert beyond["allowed"] is False
    assert beyond["status"]["message"] == (
        "spec.hold.until 2026-12-06T12:00:00.000Z is more than 1h ahead, the longest hold"
        " the maxHoldSeconds of SessionPolicy gpu-limits in namespace media allows: hold"
        " until 2026-12-06T11:00:00.000Z at the latest"
    )
    assert within["allowed"] is True
    assert policies.asked == ["media", "media"]


async def test_a_write_that_sets_no_hold_reads_no_policy() -> None:
    policies = Policies(policy("gpu-limits", maxHoldSeconds=0))

    [answer] = await answers(policies, hold_review(None))

    assert answer["allowed"] is True
    assert policies.asked == []


async def test_policies_that_cannot_be_read_fail_the_webhook_call() -> None:
    rest = FakeRest([ApiUnavailable("connection refused")])

    # A failed call: the apiserver applies the webhook's failurePolicy (Fail by default).
    assert await answers(SessionPolicyApi(rest), hold_review("2026-12-06T11:00:00Z")) == [503]
