"""The text of ``describe``: a Session's facts, then its timeline, in 80 columns."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from session_operator.kubectl_session import columns
from session_operator.kubectl_session.durations import human_duration
from session_operator.kubectl_session.table import GAP, Column, natural_widths, render
from session_operator.kubectl_session.timeline import Entry

INDENT = "  "
MESSAGE_MIN_WIDTH = 24
_TIMELINE_COLUMNS = (Column("AGE"), Column("FROM"), Column("WHAT"), Column("REASON"))


def describe(
    session: Mapping[str, Any], entries: Sequence[Entry], now: datetime, width: int
) -> list[str]:
    """The lines of ``describe`` for *session* with its timeline *entries* at *now*; a
    message longer than *width* leaves room for is wrapped under its column."""
    lines = [f"{label + ':':<16}{value}" for label, value in _facts(session, now)]
    lines.append("Timeline:")
    if entries:
        lines.extend(INDENT + line for line in _timeline(entries, now, width - len(INDENT)))
    else:
        lines.append(f"{INDENT}<none>")
    return lines


def _facts(session: Mapping[str, Any], now: datetime) -> list[tuple[str, str]]:
    metadata = session.get("metadata") or {}
    spec = session.get("spec") or {}
    status = session.get("status") or {}
    facts = [
        ("Name", str(metadata.get("name", columns.NONE))),
        ("Namespace", str(metadata.get("namespace", columns.NONE))),
        ("Session ID", str(status.get("sessionID") or columns.NONE)),
        ("State", columns.state(session)),
        ("Stop reason", columns.reason(session)),
        ("Time left", columns.time_left(session, now)),
        ("Lease until", str(status.get("leaseExpiresAt") or columns.NONE)),
        *([("Held until", str(status["holdUntil"]))] if status.get("holdUntil") else []),
        (
            "Last heartbeat",
            _ago(columns.last_heartbeat_age(session, now), status.get("lastHeartbeat")),
        ),
        ("Lease", _lease(status)),
    ]
    limit = columns.limit(session, now)
    if limit is not None:
        facts.append(("Hold/cap", limit))
    facts += [
        ("Stop requested", "yes" if spec.get("stop") is True else "no"),
        ("Workload", "a Pod from spec.template" if spec.get("template") else "none"),
        ("Created", _ago(columns.age(session, now), metadata.get("creationTimestamp"))),
    ]
    if status.get("stoppedAt"):
        facts.append(("Stopped at", str(status["stoppedAt"])))
    return facts


def _ago(age: str, instant: object) -> str:
    return columns.NONE if age == columns.NONE else f"{age} ago ({instant})"


def _lease(status: Mapping[str, Any]) -> str:
    ttl, interval = status.get("leaseTTLSeconds"), status.get("heartbeatInterval")
    if not isinstance(ttl, int) or not isinstance(interval, int):
        return columns.NONE
    return f"{ttl}s, a heartbeat every {interval}s"


def _when(at: datetime, now: datetime) -> str:
    """An age, or for an instant ahead (a lease's expiry), ``in 42s``."""
    return human_duration(now - at) if at <= now else f"in {human_duration(at - now)}"


def _timeline(entries: Sequence[Entry], now: datetime, width: int) -> list[str]:
    rows = [[_when(entry.at, now), entry.source, entry.what, entry.reason] for entry in entries]
    widths = natural_widths(_TIMELINE_COLUMNS, rows)
    offset = sum(widths) + len(GAP) * len(widths)
    wrapped = [
        textwrap.wrap(entry.message, max(width - offset, MESSAGE_MIN_WIDTH)) or [""]
        for entry in entries
    ]
    table = render(
        (*_TIMELINE_COLUMNS, Column("MESSAGE")),
        [[*row, lines[0]] for row, lines in zip(rows, wrapped, strict=True)],
        None,
    )
    lines = [table[0]]
    for line, message in zip(table[1:], wrapped, strict=True):
        lines.append(line)
        lines.extend(" " * offset + more for more in message[1:])
    return lines
