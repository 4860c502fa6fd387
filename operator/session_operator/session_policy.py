"""The SessionPolicies of a namespace (docs/lease-rules.md, "Session policies"), pure:
decoded, merged into the one set of defaults and bounds in force, the lifecycle settings
they give a Session the operator initialises, and the longest hold they allow.

Admission refuses a Session outside a policy's bounds (the chart's ValidatingAdmissionPolicy
``<release>-session-policy``), so what a Session asks for is within them already. What it
leaves out comes from here: the policy's default, else the operator's configuration brought
within the policy's bounds. Every policy of a namespace applies, as LimitRanges do: the
bounds in force are the tightest of all, and the defaults the first policy's, by name, that
sets them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from session_operator.hold import MAX_HOLD_SETTING
from session_operator.lifecycle import LifecycleSettings
from session_operator.models import GROUP, VERSION

PLURAL = "sessionpolicies"
KIND = "SessionPolicy"
_MIN_HEARTBEATS_PER_TTL = 3
"""A lease outlasts this many heartbeat intervals (the CRDs' rule, and the configuration's)."""


def session_policies_path(namespace: str) -> str:
    """The API path of the SessionPolicies of *namespace*."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


_DECODED = ConfigDict(populate_by_name=True, extra="ignore")


@pydantic_dataclass(frozen=True, config=_DECODED)
class Bounds:
    """One field's default and bounds, in seconds (``None``: not set)."""

    default: int | None = None
    minimum: int | None = Field(default=None, alias="min")
    maximum: int | None = Field(default=None, alias="max")


@pydantic_dataclass(frozen=True, config=_DECODED)
class LeaseBounds:
    """``spec.lease`` of a SessionPolicy: the bounds of a Session's ``spec.lease``."""

    ttl_seconds: Bounds = Field(default_factory=Bounds, alias="ttlSeconds")
    heartbeat_interval_seconds: Bounds = Field(
        default_factory=Bounds, alias="heartbeatIntervalSeconds"
    )
    max_lifetime_seconds: Bounds = Field(default_factory=Bounds, alias="maxLifetimeSeconds")


@pydantic_dataclass(frozen=True, config=_DECODED)
class SessionPolicySpec:
    """``spec`` of a SessionPolicy, as far as the operator applies it. (``allowTemplate``
    is the admission policy's alone.)"""

    lease: LeaseBounds = Field(default_factory=LeaseBounds)
    start_timeout_seconds: Bounds = Field(default_factory=Bounds, alias="startTimeoutSeconds")
    max_hold_seconds: int | None = Field(default=None, alias="maxHoldSeconds")


_SPEC = TypeAdapter(SessionPolicySpec)


@dataclass(frozen=True)
class SessionPolicy:
    """One SessionPolicy: its name and what it sets."""

    name: str
    spec: SessionPolicySpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SessionPolicy:
        """Decode a SessionPolicy object as the API returns it."""
        return cls(
            name=body["metadata"]["name"], spec=_SPEC.validate_python(body.get("spec") or {})
        )


@dataclass(frozen=True)
class NamespacePolicy:
    """The defaults and bounds in force in one namespace: every policy's, merged."""

    names: tuple[str, ...]
    """The policies merged, by name (empty: the namespace has none)."""
    ttl: Bounds
    heartbeat_interval: Bounds
    max_lifetime: Bounds
    start_timeout: Bounds


def merged(policies: Iterable[SessionPolicy]) -> NamespacePolicy:
    """The defaults and bounds of a namespace with *policies*: each minimum the greatest of
    theirs, each maximum the least, each default the first policy's (by name) that sets
    it."""
    ordered = sorted(policies, key=lambda policy: policy.name)
    specs = [policy.spec for policy in ordered]
    return NamespacePolicy(
        names=tuple(policy.name for policy in ordered),
        ttl=_tightest(spec.lease.ttl_seconds for spec in specs),
        heartbeat_interval=_tightest(spec.lease.heartbeat_interval_seconds for spec in specs),
        max_lifetime=_tightest(spec.lease.max_lifetime_seconds for spec in specs),
        start_timeout=_tightest(spec.start_timeout_seconds for spec in specs),
    )


def _tightest(all_bounds: Iterable[Bounds]) -> Bounds:
    listed = list(all_bounds)
    defaults = [b.default for b in listed if b.default is not None]
    minima = [b.minimum for b in listed if b.minimum is not None]
    maxima = [b.maximum for b in listed if b.maximum is not None]
    return Bounds(
        default=defaults[0] if defaults else None,
        min=max(minima) if minima else None,
        max=min(maxima) if maxima else None,
    )


def within_policy(settings: LifecycleSettings, policy: NamespacePolicy) -> LifecycleSettings:
    """The lifecycle *settings* for a Session of a namespace with *policy*: its defaults
    where it sets them, else the configuration's brought within its bounds. The
    configuration's own bounds (``maxLifetimeBound``, ``startTimeoutBound``) still cut.
    Without a policy, *settings* as they are."""
    if not policy.names:
        return settings
    ttl, interval = lease_defaults(policy, settings.lease_ttl, settings.heartbeat_interval)
    start_timeout = duration_default(policy.start_timeout, settings.start_timeout)
    assert start_timeout is not None, "a start timeout is always configured"
    return dataclasses.replace(
        settings,
        lease_ttl=timedelta(seconds=ttl),
        heartbeat_interval=timedelta(seconds=interval),
        max_lifetime=duration_default(policy.max_lifetime, settings.max_lifetime),
        start_timeout=start_timeout,
        policies=policy.names,
    )


def lease_defaults(
    policy: NamespacePolicy, configured_ttl: timedelta, configured_interval: timedelta
) -> tuple[int, int]:
    """The TTL and heartbeat interval, in seconds, of a Session without ``spec.lease``: the
    policy's default pair, else the configured one, within the policy's bounds and with a
    TTL of at least 3 intervals (the TTL is raised first, then the interval lowered; a
    policy's CEL rules keep its own maximum TTL at least 3 minimum intervals)."""
    if policy.ttl.default is not None and policy.heartbeat_interval.default is not None:
        ttl, interval = policy.ttl.default, policy.heartbeat_interval.default
    else:
        ttl = math.ceil(configured_ttl.total_seconds())
        interval = math.ceil(configured_interval.total_seconds())
    ttl = _whole_seconds_within(ttl, policy.ttl)
    interval = _whole_seconds_within(interval, policy.heartbeat_interval)
    if ttl < _MIN_HEARTBEATS_PER_TTL * interval:
        ceiling = Bounds(max=policy.ttl.maximum)
        ttl = _whole_seconds_within(_MIN_HEARTBEATS_PER_TTL * interval, ceiling)
        interval = min(interval, ttl // _MIN_HEARTBEATS_PER_TTL)
    return ttl, interval


def duration_default(bounds: Bounds, configured: timedelta | None) -> timedelta | None:
    """The duration a Session that leaves a field out gets: the policy's default, else
    *configured* brought within *bounds*. ``None`` is no limit, which the maximum, if
    there is one, replaces."""
    if bounds.default is not None:
        return _within(timedelta(seconds=bounds.default), bounds)
    if configured is None:
        return None if bounds.maximum is None else timedelta(seconds=bounds.maximum)
    return _within(configured, bounds)


def _within(value: timedelta, bounds: Bounds) -> timedelta:
    """*value* raised to the minimum, then lowered to the maximum (so that of two policies
    that contradict each other, the maximum wins)."""
    if bounds.minimum is not None:
        value = max(value, timedelta(seconds=bounds.minimum))
    if bounds.maximum is not None:
        value = min(value, timedelta(seconds=bounds.maximum))
    return value


def _whole_seconds_within(seconds: int, bounds: Bounds) -> int:
    return int(_within(timedelta(seconds=seconds), bounds).total_seconds())


def max_hold_in_force(
    policies: Sequence[SessionPolicy], configured: timedelta, namespace: str
) -> tuple[timedelta, str]:
    """The longest hold a Session of *namespace* may be given, and what sets it, for the
    refusal's sentence: the operator's *configured* ``maxHold``, or the shortest
    ``maxHoldSeconds`` of *policies* where one is no longer (a policy narrows the
    operator's bound, never lifts it)."""
    limits = sorted(
        (policy.spec.max_hold_seconds, policy.name)
        for policy in policies
        if policy.spec.max_hold_seconds is not None
    )
    if not limits or timedelta(seconds=limits[0][0]) > configured:
        return configured, MAX_HOLD_SETTING
    seconds, name = limits[0]
    return (
        timedelta(seconds=seconds),
        f"the maxHoldSeconds of SessionPolicy {name} in namespace {namespace}",
    )
