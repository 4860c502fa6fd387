"""Pydantic models of the Session custom resource, decoded from API bodies.

The raw strings of ``status.state`` and ``status.leaseExpiresAt`` are kept next to the
parsed values: compare-and-set writes test the exact stored text, never a re-formatted
timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from session_operator.lease import Lease, SessionState, StopReason

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


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class LeaseSpec(_Model):
    """``spec.lease``: the lease a session asks for."""

    ttl_seconds: int = Field(alias="ttlSeconds")
    heartbeat_interval_seconds: int = Field(alias="heartbeatIntervalSeconds")


class SessionSpec(_Model):
    """``spec``: what the user wants.

    Of ``spec.template`` only its presence is kept: a template may be large, every replica
    holds every Session, and only the Pod's creation needs it (``k8s/pods.py`` reads it
    then).
    """

    lease: LeaseSpec | None = None
    stop: bool = False
    has_template: bool = False

    @model_validator(mode="before")
    @classmethod
    def _note_the_template(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "template" in data:
            kept = {key: value for key, value in data.items() if key != "template"}
            return {**kept, "has_template": data["template"] is not None}
        return data


class SessionStatus(_Model):
    """``status``: what the operator observed and decided."""

    state: SessionState | None = None
    session_id: str | None = Field(default=None, alias="sessionID")
    lease_ttl_seconds: int | None = Field(default=None, alias="leaseTTLSeconds")
    heartbeat_interval: int | None = Field(default=None, alias="heartbeatInterval")
    lease_expires_at: datetime | None = Field(default=None, alias="leaseExpiresAt")
    last_heartbeat: datetime | None = Field(default=None, alias="lastHeartbeat")
    stop_reason: StopReason | None = Field(default=None, alias="stopReason")
    stopped_at: datetime | None = Field(default=None, alias="stoppedAt")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: tuple[dict[str, Any], ...] = ()


class SessionRef(_Model):
    """Where a Session lives: its namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def path(self, subresource: str = "") -> str:
        """The API path of this Session (or of one of its subresources)."""
        return sessions_path(self.namespace, self.name, subresource)


class Session(_Model):
    """A Session as read from the API, with the raw status kept for compare-and-set."""

    ref: SessionRef
    uid: str
    resource_version: str
    generation: int
    created_at: datetime
    labels: Mapping[str, str]
    finalizers: tuple[str, ...]
    deleting: bool
    spec: SessionSpec
    status: SessionStatus
    raw_status: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Session:
        """Decode a Session object as the API returns it."""
        metadata = body["metadata"]
        raw_status = body.get("status") or {}
        return cls(
            ref=SessionRef(namespace=metadata["namespace"], name=metadata["name"]),
            uid=metadata["uid"],
            resource_version=metadata.get("resourceVersion", ""),
            generation=metadata.get("generation", 0),
            created_at=metadata["creationTimestamp"],
            labels=dict(metadata.get("labels") or {}),
            finalizers=tuple(metadata.get("finalizers") or ()),
            deleting=bool(metadata.get("deletionTimestamp")),
            spec=SessionSpec.model_validate(body.get("spec") or {}),
            status=SessionStatus.model_validate(raw_status),
            raw_status=raw_status,
        )

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
        )
