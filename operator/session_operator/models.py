"""Pydantic models of the Session custom resource, decoded from API bodies.

The raw strings of ``status.state`` and ``status.leaseExpiresAt`` are kept next to the
parsed values: compare-and-set writes test the exact stored text, never a re-formatted
timestamp.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from session_operator.lease import Lease, SessionState, StopReason
from session_operator.timestamps import instant_or_none, parse_timestamp

GROUP = "xg2g.io"
VERSION = "v1alpha1"
PLURAL = "sessions"
KIND = "Session"
STATE_LABEL = "xg2g.io/state"
SESSION_LABEL = "xg2g.io/session"
FINALIZER = "xg2g.io/session-lease-operator"
"""The operator's finalizer: a deleted Session stays until it is stopped and released."""


def sessions_path(namespace: str | None, name: str = "", subresource: str = "") -> str:
    """The API path of the Sessions of *namespace* (``None``: of all namespaces), of one
    of them, or of one of its subresources."""
    path = f"/apis/{GROUP}/{VERSION}"
    path += f"/namespaces/{namespace}/{PLURAL}" if namespace is not None else f"/{PLURAL}"
    if name:
        path += f"/{name}"
    return f"{path}/{subresource}" if subresource else path


# Every replica holds every Session: the stored form is slotted dataclasses (no per-object
# dict), validated by pydantic where the API's JSON is read.
_DECODED = ConfigDict(populate_by_name=True, extra="ignore")


@pydantic_dataclass(frozen=True, slots=True, config=_DECODED)
class LeaseSpec:
    """``spec.lease``: the lease a session asks for. TTL and interval come together or not
    at all (the CRD's rule); each field left out is the operator's to choose."""

    ttl_seconds: int | None = Field(default=None, alias="ttlSeconds")
    heartbeat_interval_seconds: int | None = Field(default=None, alias="heartbeatIntervalSeconds")
    max_lifetime_seconds: int | None = Field(default=None, alias="maxLifetimeSeconds")


@pydantic_dataclass(frozen=True, slots=True, config=_DECODED)
class HoldSpec:
    """``spec.hold``: keep the session alive without heartbeats until ``until``."""

    # The apiserver checks the format already; a field the operator only reads never
    # makes a Session undecodable.
    until: Annotated[datetime | None, BeforeValidator(instant_or_none)] = None


@pydantic_dataclass(frozen=True, slots=True, config=_DECODED)
class SessionSpec:
    """``spec``: what the user wants.

    Of ``spec.template`` only its presence is kept: a template may be large, every replica
    holds every Session, and only the Pod's creation needs it (``k8s/pods.py`` reads it
    then).
    """

    lease: LeaseSpec | None = None
    stop: bool = False
    has_template: bool = False
    start_timeout_seconds: int | None = Field(default=None, alias="startTimeoutSeconds")
    hold: HoldSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _note_the_template(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "template" in data:
            kept = {key: value for key, value in data.items() if key != "template"}
            return {**kept, "has_template": data["template"] is not None}
        return data


@pydantic_dataclass(frozen=True, slots=True, config=_DECODED)
class SessionStatus:
    """``status``: what the operator observed and decided."""

    state: SessionState | None = None
    session_id: str | None = Field(default=None, alias="sessionID")
    lease_ttl_seconds: int | None = Field(default=None, alias="leaseTTLSeconds")
    heartbeat_interval: int | None = Field(default=None, alias="heartbeatInterval")
    lease_expires_at: datetime | None = Field(default=None, alias="leaseExpiresAt")
    last_heartbeat: datetime | None = Field(default=None, alias="lastHeartbeat")
    stop_reason: StopReason | None = Field(default=None, alias="stopReason")
    stopped_at: datetime | None = Field(default=None, alias="stoppedAt")
    lifetime_ends_at: datetime | None = Field(default=None, alias="lifetimeEndsAt")
    start_deadline: datetime | None = Field(default=None, alias="startDeadline")
    hold_until: datetime | None = Field(default=None, alias="holdUntil")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class SessionRef(NamedTuple):
    """Where a Session lives: its namespace and name. A tuple, hashed in C: it keys every
    store, queue and heap, and a takeover looks up each of 50,000 several times."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def path(self, subresource: str = "") -> str:
        """The API path of this Session (or of one of its subresources)."""
        return sessions_path(self.namespace, self.name, subresource)


@dataclass(frozen=True, slots=True)
class Session:
    """A Session as read from the API, with the raw status kept for compare-and-set.

    Every replica holds every Session, so of the metadata and spec, which a user with
    ``edit`` rights may fill up to the size limit, only the facts the operator acts on are
    kept: the state label, where the operator's finalizer is, and whether there are any
    labels or finalizers at all; no annotations, no template (``SessionSpec``). The status
    is kept whole: only the operator writes it, through the status subresource.
    """

    ref: SessionRef
    uid: str
    resource_version: str
    generation: int
    created_at: datetime
    state_label: str | None
    """The ``xg2g.io/state`` label's value, the one label the operator reads."""
    has_labels: bool
    """Whether any label is set: the state label is then added to the map, else the map is
    written whole."""
    finalizer_index: int | None
    """Where the operator's finalizer is in ``metadata.finalizers`` (``None``: absent)."""
    has_finalizers: bool
    """Whether any finalizer is set (the operator's or another's)."""
    deleting: bool
    spec: SessionSpec
    status: SessionStatus
    raw_status: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Session:
        """Decode a Session object as the API returns it."""
        metadata = body["metadata"]
        labels = metadata.get("labels") or {}
        finalizers = metadata.get("finalizers") or ()
        raw_status = _shared(body.get("status") or {})
        return cls(
            ref=SessionRef(namespace=metadata["namespace"], name=metadata["name"]),
            uid=metadata["uid"],
            resource_version=metadata.get("resourceVersion", ""),
            generation=metadata.get("generation", 0),
            created_at=parse_timestamp(metadata["creationTimestamp"]),
            state_label=_shared(labels.get(STATE_LABEL)),
            has_labels=bool(labels),
            finalizer_index=finalizers.index(FINALIZER) if FINALIZER in finalizers else None,
            has_finalizers=bool(finalizers),
            deleting=bool(metadata.get("deletionTimestamp")),
            spec=_SPEC.validate_python(body.get("spec") or {}),
            status=_STATUS.validate_python(raw_status),
            raw_status=raw_status,
        )

    @property
    def conditions(self) -> Sequence[Mapping[str, Any]]:
        """``status.conditions`` as stored (``metav1.Condition`` entries)."""
        conditions = self.raw_status.get("conditions")
        return conditions if isinstance(conditions, list) else ()

    def __repr__(self) -> str:
        return f"Session({self.ref}, uid={self.uid}, resourceVersion={self.resource_version})"

    @property
    def initialised(self) -> bool:
        """True once the operator has written the state and the lease."""
        return self.status.state is not None and self.status.lease_expires_at is not None

    def lease(self) -> Lease | None:
        """The lease as the pure rules see it; ``None`` before initialisation."""
        status = self.status
        if (
            status.state is None
            or status.lease_expires_at is None
            or status.lease_ttl_seconds is None
            or status.heartbeat_interval is None
        ):
            return None
        return Lease(
            state=status.state,
            expires_at=status.lease_expires_at,
            last_heartbeat=status.last_heartbeat,
            ttl=timedelta(seconds=status.lease_ttl_seconds),
            heartbeat_interval=timedelta(seconds=status.heartbeat_interval),
            stop_reason=status.stop_reason,
            lifetime_ends_at=status.lifetime_ends_at,
            start_deadline=status.start_deadline,
            hold_until=status.hold_until,
        )


_SPEC = TypeAdapter(SessionSpec)
_STATUS = TypeAdapter(SessionStatus)


def _shared(value: Any) -> Any:
    """*value* (decoded JSON) with its keys and strings interned: every replica holds every
    Session, and their condition types, reasons and messages repeat from one to the next."""
    if isinstance(value, dict):
        return {sys.intern(key): _shared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shared(item) for item in value]
    if type(value) is str:  # not a subclass (an enum member): intern() takes exact str
        return sys.intern(value)
    return value
