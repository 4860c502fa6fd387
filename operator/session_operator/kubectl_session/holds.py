"""``hold`` and ``release``: what they ask of a Session and what they say (pure).

``hold`` sets ``spec.hold.until`` and ``release`` removes ``spec.hold``, as the
``kubectl patch`` lines of docs/lease-rules.md do. The operator takes the hold up; the
end in force is ``status.holdUntil`` (docs/lease-rules.md, Hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from session_operator.kubectl_session.durations import human_duration
from session_operator.kubectl_session.errors import CommandError
from session_operator.lease import LIVE_STATES
from session_operator.timestamps import format_timestamp


def requested_end(now: datetime, duration: timedelta | None, until: datetime | None) -> datetime:
    """The end a ``hold`` asks for: *until* (``--until``), else *now* plus *duration*
    (``--for``). An *until* not ahead of *now* is a :class:`CommandError`: it would hold
    nothing."""
    if until is None:
        assert duration is not None, "the command line asks for --for or --until"
        return now + duration
    if until <= now:
        raise CommandError(f"--until {format_timestamp(until)} has passed: a hold ends later")
    return until


def check_holdable(name: str, session: Mapping[str, Any]) -> None:
    """Raise a :class:`CommandError` for a *session* no hold can keep: one that is
    stopping, stopped or failed. One without a status yet is about to be live."""
    status = session.get("status") or {}
    state = status.get("state")
    if state is None or state in LIVE_STATES:
        return
    reason = f" ({status['stopReason']})" if status.get("stopReason") else ""
    raise CommandError(f'session "{name}" is {state}{reason}: a hold keeps only a live session')


def held(name: str, end: datetime, now: datetime) -> str:
    """The line of a hold asked for until *end*."""
    return (
        f"session/{name}: hold requested until {format_timestamp(end)}"
        f" ({human_duration(end - now)} from now)"
    )


def not_held(name: str, session: Mapping[str, Any]) -> str | None:
    """The line of a ``release`` of *session* that has no ``spec.hold`` (nothing to do);
    ``None`` when it has one to remove."""
    spec = session.get("spec") or {}
    return None if spec.get("hold") else f"session/{name}: not held"
