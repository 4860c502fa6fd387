"""Read and compare-and-set write the leader ``coordination.k8s.io/v1`` Lease."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from session_operator.k8s.errors import NotFound
from session_operator.k8s.rest import Rest
from session_operator.leadership import LeaseRecord
from session_operator.timestamps import format_micro_time, parse_timestamp


class LeaseApi:
    """One named Lease: read it, create it, or replace it at a known resourceVersion."""

    def __init__(self, rest: Rest, namespace: str, name: str) -> None:
        self._rest = rest
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._namespace = namespace
        self._name = name

    async def read(self) -> tuple[LeaseRecord | None, str | None]:
        """The record and its resourceVersion; ``(None, None)`` when there is no Lease."""
        try:
            body = await self._rest.request("GET", f"{self._collection}/{self._name}")
        except NotFound:
            return None, None
        return _record(body.get("spec") or {}), body["metadata"]["resourceVersion"]

    async def write(self, record: LeaseRecord, resource_version: str | None) -> str:
        """Create the Lease (no version) or replace it if still at *resource_version*.

        Raises ``PreconditionFailed`` when someone else wrote first; returns the new version.
        """
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": _spec(record),
        }
        if resource_version is None:
            created = await self._rest.request("POST", self._collection, body=body)
            return str(created["metadata"]["resourceVersion"])
        metadata["resourceVersion"] = resource_version
        replaced = await self._rest.request("PUT", f"{self._collection}/{self._name}", body=body)
        return str(replaced["metadata"]["resourceVersion"])


def _record(spec: dict[str, Any]) -> LeaseRecord:
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        acquired_at=_time(spec.get("acquireTime")),
        renewed_at=_time(spec.get("renewTime")),
        duration=timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0)),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def _spec(record: LeaseRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "leaseDurationSeconds": max(1, int(record.duration.total_seconds())),
        "leaseTransitions": record.transitions,
    }
    if record.holder:
        spec["holderIdentity"] = record.holder
    if record.acquired_at is not None:
        spec["acquireTime"] = format_micro_time(record.acquired_at)
    if record.renewed_at is not None:
        spec["renewTime"] = format_micro_time(record.renewed_at)
    return spec


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None
