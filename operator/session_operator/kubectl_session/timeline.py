"""A Session's lease as a timeline, oldest first: its creation, its conditions'
transitions, its Events, the last accepted heartbeat and, while it is live, the end of its
hold and the instant its lease runs out.

Pure: the Session and its Events are the JSON objects the apiserver returns (core/v1
Events, whose ``involvedObject`` is the Session). Entries at the same instant keep the
order creation, conditions, Events, lease, and the Events' own order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from session_operator.kubectl_session.columns import NONE, lease_end
from session_operator.lease import LIVE_STATES
from session_operator.timestamps import instant_or_none as timestamp


@dataclass(frozen=True)
class Entry:
    """One step of the history: when, where it was recorded (``session``, ``condition``,
    ``event``, ``lease``), what (``created``, ``Ready=True``, ``Warning``, ``heartbeat``),
    why, and the message."""

    at: datetime
    source: str
    what: str
    reason: str
    message: str


def timeline(session: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """The history of *session* from its metadata, its conditions, *events* and its status'
    lease, sorted by time. A step without a readable time is left out: it has no place."""
    entries: list[Entry] = []
    created = timestamp((session.get("metadata") or {}).get("creationTimestamp"))
    if created is not None:
        entries.append(Entry(created, "session", "created", NONE, ""))
    status = session.get("status") or {}
    entries.extend(_condition_entries(status.get("conditions") or ()))
    entries.extend(entry for event in events if (entry := _event_entry(event)) is not None)
    entries.extend(_lease_entries(session))
    return sorted(entries, key=lambda entry: entry.at)


def _lease_entries(session: Mapping[str, Any]) -> Iterable[Entry]:
    """The last heartbeat (no Event tells of it: heartbeats are not transitions) and, for
    a live session, the end of its hold and the expiry ahead (the hold's end if later)."""
    status = session.get("status") or {}
    last = timestamp(status.get("lastHeartbeat"))
    if last is not None:
        yield Entry(last, "lease", "heartbeat", NONE, "last accepted heartbeat")
    if status.get("state") not in LIVE_STATES:
        return
    hold_until = timestamp(status.get("holdUntil"))
    if hold_until is not None:
        yield Entry(hold_until, "lease", "hold end", NONE, "the hold keeps the session until then")
    expires_at = lease_end(session)
    if expires_at is not None:
        yield Entry(expires_at, "lease", "expiry", NONE, "unless a heartbeat comes first")


def _condition_entries(conditions: Sequence[Mapping[str, Any]]) -> Iterable[Entry]:
    for condition in conditions:
        at = timestamp(condition.get("lastTransitionTime"))
        if at is not None:
            yield Entry(
                at,
                "condition",
                f"{condition.get('type', '?')}={condition.get('status', 'Unknown')}",
                str(condition.get("reason") or NONE),
                str(condition.get("message") or ""),
            )


def _event_entry(event: Mapping[str, Any]) -> Entry | None:
    """An Event where it first happened; a repeated one says how often, and when last."""
    metadata = event.get("metadata") or {}
    first = (
        timestamp(event.get("eventTime"))
        or timestamp(event.get("firstTimestamp"))
        or timestamp(metadata.get("creationTimestamp"))
    )
    if first is None:
        return None
    message = str(event.get("message") or "")
    series = event.get("series") or {}
    count = series.get("count") or event.get("count") or 1
    if isinstance(count, int) and count > 1:
        last = series.get("lastObservedTime") or event.get("lastTimestamp")
        message += f" ({count} times, last at {last})" if last else f" ({count} times)"
    return Entry(
        first,
        "event",
        str(event.get("type") or "Normal"),
        str(event.get("reason") or NONE),
        message,
    )
