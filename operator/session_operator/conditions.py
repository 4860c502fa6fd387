"""``metav1.Condition`` entries of a Session: ``Ready`` and ``LeaseValid`` (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from session_operator.timestamps import format_time

READY = "Ready"
LEASE_VALID = "LeaseValid"

LEASE_GRANTED = "LeaseGranted"
"""The reason of ``LeaseValid`` while heartbeats keep the lease."""
LEASE_GRANTED_MESSAGE = "heartbeats keep the lease; see status.leaseExpiresAt"


@dataclass(frozen=True)
class Condition:
    """One condition as the operator wants it; time and generation are added on write."""

    type: str
    status: bool
    reason: str
    message: str


def merged_conditions(
    existing: Sequence[Mapping[str, Any]],
    updates: Sequence[Condition],
    now: datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """*existing* with *updates* applied; ``lastTransitionTime`` moves only on a status change."""
    merged = {str(entry.get("type")): dict(entry) for entry in existing}
    for update in updates:
        status = "True" if update.status else "False"
        previous = merged.get(update.type)
        unchanged = previous is not None and previous.get("status") == status
        transition = (
            previous["lastTransitionTime"]
            if unchanged and previous and previous.get("lastTransitionTime")
            else format_time(now)
        )
        merged[update.type] = {
            "type": update.type,
            "status": status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": transition,
            "observedGeneration": generation,
        }
    return list(merged.values())
