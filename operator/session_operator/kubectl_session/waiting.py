"""``wait --for=ready|stopped``: watch one Session until its state says so, or time out."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from session_operator.config import format_duration
from session_operator.k8s.errors import ResourceVersionExpired
from session_operator.kubectl_session.errors import CommandError
from session_operator.kubectl_session.sessions import Sessions
from session_operator.lease import TERMINAL_STATES, SessionState

WATCH_SECONDS = 60
"""A watch is asked to end after this long at most, then started anew."""


class Target(StrEnum):
    """What ``--for`` waits for."""

    READY = "ready"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Verdict:
    """Whether the wait is over: *met*, or *hopeless* (it can never be met, said in
    *message*), else go on waiting."""

    met: bool = False
    hopeless: bool = False
    message: str = ""

    @property
    def decided(self) -> bool:
        """Whether the wait is over, either way."""
        return self.met or self.hopeless


def verdict(target: Target, name: str, session: Mapping[str, Any] | None) -> Verdict:
    """The wait for *target* given *session* as it is now (``None``: deleted).

    ``ready`` is met by ``ready`` and can no longer be once the session stops or is
    deleted. ``stopped`` is met by a terminal state, ``stopped`` or ``failed`` (the
    session is over either way; the line says which), and by a deletion.
    """
    if session is None:
        if target is Target.STOPPED:
            return Verdict(met=True, message=f"session/{name}: deleted")
        return Verdict(hopeless=True, message=f'session "{name}" was deleted before it was ready')
    status = session.get("status") or {}
    state = status.get("state")
    reason = f" ({status['stopReason']})" if status.get("stopReason") else ""
    if target is Target.READY:
        if state == SessionState.READY:
            return Verdict(met=True, message=f"session/{name}: ready")
        if state in (SessionState.STOPPING, *TERMINAL_STATES):
            return Verdict(
                hopeless=True,
                message=f'session "{name}" is {state}{reason}: it will never be ready',
            )
        return Verdict()
    if state in TERMINAL_STATES:
        return Verdict(met=True, message=f"session/{name}: {state}{reason}")
    return Verdict()


async def wait_for(sessions: Sessions, name: str, target: Target, within: timedelta) -> str:
    """Wait until Session *name* meets *target*; the line that says so. A wait that can
    never be met, or is not met *within* that long, is a :class:`CommandError`."""
    last: Mapping[str, Any] = {}
    deadline = time.monotonic() + within.total_seconds()

    async def decided() -> Verdict:
        nonlocal last
        while True:  # read, then watch from there; after a watch ends, read again
            last = await sessions.get(name)
            outcome = verdict(target, name, last)
            if outcome.decided:
                return outcome
            version = str(last["metadata"].get("resourceVersion", ""))
            seconds = max(1, min(WATCH_SECONDS, math.ceil(deadline - time.monotonic())))
            with contextlib.suppress(ResourceVersionExpired):  # too old: read again
                async for change in sessions.watch(name, version, seconds):
                    last = change.session
                    outcome = verdict(target, name, None if change.type == "DELETED" else last)
                    if outcome.decided:
                        return outcome

    try:
        outcome = await asyncio.wait_for(decided(), within.total_seconds())
    except TimeoutError:
        state = (last.get("status") or {}).get("state") or "none yet"
        raise CommandError(
            f'timed out after {format_duration(within)} waiting for session "{name}" to be'
            f" {target} (state: {state})"
        ) from None
    if outcome.hopeless:
        raise CommandError(outcome.message)
    return outcome.message
