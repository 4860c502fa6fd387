"""The table of ``list`` and ``get``: a line per Session, at most as wide as the terminal.

The default table carries what a person watches (state, time left, the last heartbeat's
age, the stop reason, and a hold or cap where a Session sets one) and fits 80 columns even
with ``-A``: only NAMESPACE and NAME are shortened, with an ellipsis, when they would not
fit. ``-o wide`` adds the instants and the age and shortens nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from session_operator.kubectl_session import columns
from session_operator.kubectl_session.table import Column, render

# Floors of the two shrinkable columns: with every other column at its widest (`starting`,
# `expired`, `LEASE_EXPIRED`, `hold 2y100d`) a line of `-A` still fits 80 characters.
NAMESPACE_FLOOR = len("NAMESPACE")
NAME_FLOOR = 9


def session_table(
    sessions: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    all_namespaces: bool,
    wide: bool,
    width: int | None,
) -> list[str]:
    """The lines of the table of *sessions* at *now*. *width*: the most characters a line
    may take (the wide table ignores it)."""
    limits = [columns.limit(session, now) for session in sessions]
    with_limit = any(value is not None for value in limits)
    header: list[Column] = []
    if all_namespaces:
        header.append(Column("NAMESPACE", shrinkable=not wide, floor=NAMESPACE_FLOOR))
    header += [
        Column("NAME", shrinkable=not wide, floor=NAME_FLOOR),
        Column("STATE"),
        Column("TIME LEFT"),
    ]
    header += [Column("EXPIRES"), Column("LAST HEARTBEAT")] if wide else [Column("LAST BEAT")]
    header.append(Column("REASON"))
    if with_limit:
        header.append(Column("HOLD/CAP"))
    if wide:
        header.append(Column("AGE"))
    rows = [
        _row(session, now, limit, all_namespaces=all_namespaces, wide=wide, with_limit=with_limit)
        for session, limit in zip(sessions, limits, strict=True)
    ]
    return render(header, rows, None if wide else width)


def _row(
    session: Mapping[str, Any],
    now: datetime,
    limit: str | None,
    *,
    all_namespaces: bool,
    wide: bool,
    with_limit: bool,
) -> list[str]:
    metadata = session.get("metadata") or {}
    status = session.get("status") or {}
    row: list[str] = []
    if all_namespaces:
        row.append(str(metadata.get("namespace", columns.NONE)))
    row += [
        str(metadata.get("name", columns.NONE)),
        columns.state(session),
        columns.time_left(session, now),
    ]
    if wide:
        row += [
            str(status.get("leaseExpiresAt") or columns.NONE),
            str(status.get("lastHeartbeat") or columns.NONE),
        ]
    else:
        row.append(columns.last_heartbeat_age(session, now))
    row.append(columns.reason(session))
    if with_limit:
        row.append(limit or columns.NONE)
    if wide:
        row.append(columns.age(session, now))
    return row
