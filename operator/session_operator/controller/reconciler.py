"""Apply the lifecycle's steps to one Session until it has nothing left to do now.

Every write is compare-and-set. When one loses (the object changed under it), the
Session is read again and the next step is decided from the fresh object: a stop
never overrides a lease that a heartbeat just extended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from session_operator import metrics
from session_operator.k8s.errors import PreconditionFailed, Rejected
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.pods import PodApi
from session_operator.k8s.sessions import SessionApi
from session_operator.lease import StopReason
from session_operator.lifecycle import (
    InitialiseStatus,
    LeaseDefaults,
    MirrorStateLabel,
    StartWorkload,
    StopSession,
    WaitUntil,
    next_step,
)
from session_operator.models import Session

MAX_STEPS = 8

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Where a reconcile left a Session: its newest version and when to look again."""

    session: Session | None
    deadline: datetime | None


class Reconciler:
    """Drives one Session through its lifecycle with compare-and-set writes."""

    def __init__(
        self,
        sessions: SessionApi,
        pods: PodApi,
        events: EventRecorder,
        defaults: LeaseDefaults,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._pods = pods
        self._events = events
        self._defaults = defaults
        self._clock = clock

    async def reconcile(self, session: Session) -> Outcome:
        """Take steps until the Session waits for its deadline (or is gone).

        Raises ``ApiUnavailable`` when the apiserver cannot be reached; the caller retries.
        """
        current: Session | None = session
        for _ in range(MAX_STEPS):
            if current is None:
                return Outcome(None, None)
            step = next_step(current, self._clock(), self._defaults)
            if isinstance(step, WaitUntil):
                return Outcome(current, step.deadline)
            try:
                current = await self._apply(current, step)
            except PreconditionFailed:
                current = await self._sessions.get(current.ref)
        logger.warning("%s: still changing after %d steps; will look again", session.ref, MAX_STEPS)
        return Outcome(current, self._clock())

    async def _apply(
        self,
        session: Session,
        step: InitialiseStatus | StartWorkload | StopSession | MirrorStateLabel,
    ) -> Session:
        ref = session.ref
        if isinstance(step, MirrorStateLabel):
            return await self._sessions.set_state_label(ref, step.state.value)
        if isinstance(step, InitialiseStatus):
            updated = await self._sessions.write_status_at_version(
                ref, step.status, session.resource_version
            )
            await self._events.record(updated, step.event_reason, step.event_note, self._clock())
            return updated
        if isinstance(step, StartWorkload):
            try:
                await self._pods.create_workload(session)
            except Rejected as error:
                logger.warning("%s: the workload Pod was refused: %s", ref, error)
                raise
            updated = await self._sessions.patch_status(ref, step.patch)
            note = f"workload Pod {ref.name} created; waiting for it to become Ready"
            await self._events.record(updated, "Starting", note, self._clock())
            return updated
        updated = await self._sessions.patch_status(ref, step.patch)
        if step.lease_expires_at is not None:
            lag = self._clock() - step.lease_expires_at
            metrics.LEASE_EXPIRED.labels(previous_state=step.previous_state.value).inc()
            metrics.EXPIRY_LAG.observe(lag.total_seconds())
        warning = step.reason is StopReason.FAILED
        await self._events.record(
            updated, step.event_reason, step.event_note, self._clock(), warning=warning
        )
        return updated
