"""Apply the lifecycle's steps to one Session until it has nothing left to do now.

Every status write is compare-and-set. When one loses (the object changed under it),
the Session is read again and the next step is decided from the fresh object: a stop
never overrides a lease that a heartbeat just extended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from session_operator import metrics
from session_operator.informer.pod_store import PodStore
from session_operator.k8s.errors import NotFound, PreconditionFailed, Rejected
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.owned import OwnedObjects
from session_operator.k8s.pods import PodApi
from session_operator.k8s.session_policies import SessionPolicyApi
from session_operator.k8s.sessions import SessionApi
from session_operator.lease import LIVE_STATES, SessionState
from session_operator.lifecycle import (
    RELEASE_POLL,
    STOPPING_EVENT,
    ChangeHold,
    DeleteSession,
    GrantGrace,
    InitialiseStatus,
    LifecycleSettings,
    MarkReady,
    ReleaseObjects,
    RemoveFinalizer,
    StartWorkload,
    Step,
    StopSession,
    Transition,
    WaitUntil,
    WarnExpiringSoon,
    WriteMetadata,
    next_step,
    release_step,
)
from session_operator.models import Session, SessionRef
from session_operator.outage_rule import OutageWindow
from session_operator.session_policy import merged, within_policy
from session_operator.workload import Workload

MAX_STEPS = 8
POD_LISTING_WAIT = timedelta(seconds=30)
"""How long reconciles wait for the Pod watch's first listing before they read a Pod that
the store lacks from the apiserver (a replica that cannot list Pods still acts)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Where a reconcile left a Session: its newest version and when to look again."""

    session: Session | None
    deadline: datetime | None
    again: bool = False
    """Look again once the work that is due is done: a step was left for a follow-up pass
    (the state label after a stop, the release of what a stop begun in a backlog holds)."""


@dataclass(frozen=True)
class Kubernetes:
    """The apiserver calls the reconciler makes."""

    sessions: SessionApi
    pods: PodApi
    owned: OwnedObjects
    events: EventRecorder
    policies: SessionPolicyApi | None = None
    """Where the SessionPolicies of a namespace are read (``None``: none is read, the
    configuration alone applies)."""


@dataclass(frozen=True)
class BegunStop:
    """A stop written while other stops were due, its release left for later: the stop's
    own Event, told once its objects are released (with its end, when that is at once)."""

    uid: str
    stop: Transition


class Reconciler:
    """Drives one Session through its lifecycle with compare-and-set writes."""

    def __init__(
        self,
        kube: Kubernetes,
        pod_store: PodStore,
        settings: LifecycleSettings,
        clock: Callable[[], datetime],
        outages: Callable[[], Sequence[OutageWindow]] = tuple,
    ) -> None:
        self._kube = kube
        self._pod_store = pod_store
        self._settings = settings
        self._clock = clock
        self._outages = outages
        self._stops_begun: dict[SessionRef, BegunStop] = {}
        # Until when (the loop's clock) reconciles wait for the Pod watch's first listing.
        self._pod_listing_awaited_until: float | None = None

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
        """Take steps until the Session waits for a deadline (or is gone), or until a stop
        is written: what follows a stop (its state label) is left to a follow-up pass
        (``Outcome.again``), behind the other stops that are due. While *others_due* says
        stops wait for a worker, the release of what a stopping Session controls is left
        to that pass too, so each of them is written before any release.

        Raises ``KubernetesError`` when the apiserver fails; the caller retries.
        """
        current: Session | None = session
        for _ in range(MAX_STEPS):
            if current is None:
                return Outcome(None, None)
            begun = self._begun_stop(current)
            try:
                if begun is not None:
                    return await self._finish_at_once(current, begun)
                result = await self._take_step(current, others_due)
            except PreconditionFailed:
                current = await self._kube.sessions.get(current.ref)
                continue
            if isinstance(result, Outcome):
                return result
            current = result
        logger.warning("%s: still changing after %d steps; will look again", session.ref, MAX_STEPS)
        return Outcome(current, self._clock())

    async def _take_step(
        self, session: Session, others_due: Callable[[], bool]
    ) -> Session | Outcome:
        workload = await self._workload(session)
        settings = await self._settings_for(session)
        step = next_step(session, self._clock(), settings, workload, self._outages())
        return await self._apply(session, step, others_due)

    async def _apply(
        self, session: Session, step: Step, others_due: Callable[[], bool]
    ) -> Session | Outcome:
        ref = session.ref
        match step:
            case InitialiseStatus():
                updated = await self._kube.sessions.write_status_at_version(
                    ref, step.status, session.resource_version
                )
                self._tell(updated, step.event_reason, step.event_note)
                return updated
            case WriteMetadata() | RemoveFinalizer():
                return await self._kube.sessions.patch(ref, step.patch)
            case StartWorkload():
                try:
                    await self._kube.pods.create_workload(session)
                except Rejected as error:
                    logger.warning("%s: the workload Pod was refused: %s", ref, error)
                    raise
                return await self._transition(session, step.transition)
            case MarkReady() | GrantGrace() | WarnExpiringSoon():
                return await self._transition(session, step.transition)
            case ChangeHold():
                updated = await self._transition(session, step.transition)
                metrics.HOLDS.labels(change=step.change.value).inc()
                return updated
            case StopSession():
                updated = await self._kube.sessions.patch_status(ref, step.transition.patch)
                metrics.STOPS.labels(stop_reason=step.reason.value, reason=step.cause.value).inc()
                if step.lease_expires_at is not None:
                    lag = self._clock() - step.lease_expires_at
                    metrics.LEASE_EXPIRED.labels(previous_state=step.previous_state.value).inc()
                    metrics.EXPIRY_LAG.observe(lag.total_seconds())
                if updated.status.state is SessionState.STOPPING:
                    if others_due():
                        # Its Event waits for the release, to be told with its end.
                        self._stops_begun[ref] = BegunStop(updated.uid, step.transition)
                        return Outcome(updated, None, again=True)
                    return await self._finish_at_once(updated, step.transition)
                self._tell_transition(updated, step.transition)
                # The stop is done; its label waits behind the stops that are due (a
                # backlog after a takeover is then one write per stop, not two).
                return Outcome(updated, None, again=True)
            case ReleaseObjects():
                return await self._release(session, step)
            case DeleteSession():
                await self._kube.sessions.delete(session)
                logger.info(
                    "deleted %s: its retention after it stopped has passed",
                    ref,
                    extra={"session": str(ref), "reason": "Deleted"},
                )
                # Kept as it was: the watch brings the deletion (the finalizer goes then).
                return Outcome(session, None)
            case WaitUntil():
                return Outcome(session, step.deadline)
            case _:
                assert_never(step)

    async def _release(self, session: Session, step: ReleaseObjects) -> Session | Outcome:
        remaining = await self._kube.owned.release(session)
        if remaining == 0:
            return await self._transition(session, step.finish)
        now = self._clock()
        if now >= step.stop_deadline:
            return await self._transition(session, step.force)
        return Outcome(session, min(now + RELEASE_POLL, step.stop_deadline))

    def forget(self, ref: SessionRef) -> None:
        """*ref* is gone: drop what was kept of a stop it began."""
        self._stops_begun.pop(ref, None)

    def _begun_stop(self, session: Session) -> Transition | None:
        """The stop whose release was left for this pass, if *session* is still stopping
        from it; what was kept of it goes either way."""
        begun = self._stops_begun.pop(session.ref, None)
        if begun is None or begun.uid != session.uid:
            return None
        return begun.stop if session.status.state is SessionState.STOPPING else None

    async def _finish_at_once(self, session: Session, stop: Transition) -> Outcome:
        """Release at once what a session that has just begun to stop controls; its label
        (for the state it ends in) is left to a follow-up pass."""
        released = await self._release_at_once(session, stop)
        if isinstance(released, Outcome):
            return released
        return Outcome(released, None, again=True)

    async def _release_at_once(self, session: Session, stop: Transition) -> Session | Outcome:
        """Release what a session that has just begun to stop controls. What is gone at
        once (a Pod no node runs, a ConfigMap) lets it end in the same pass: one Event tells
        both steps, and its label is written once, for the terminal state. Otherwise the
        stop's Event and the ``stopping`` label are written now, and the release polled."""
        now = self._clock()
        release = release_step(session, now, self._settings)
        if await self._kube.owned.release(session) == 0:
            finish = release.finish
            # A stop at a deadline keeps its own reason (one LeaseExpired, MaxLifetimeReached
            # or StartTimeout Event per stop); a stop asked for or failed is told by its end
            # ("Stopped", "Failed").
            own = stop.event_reason != STOPPING_EVENT
            together = Transition(
                finish.patch,
                stop.event_reason if own else finish.event_reason,
                f"{stop.event_note}; {finish.event_note}",
                warning=stop.warning or finish.warning,
            )
            return await self._transition(session, together)
        self._tell_transition(session, stop)
        step = next_step(session, now, self._settings, None, self._outages())
        if isinstance(step, WriteMetadata):
            session = await self._kube.sessions.patch(session.ref, step.patch)
        return Outcome(session, min(now + RELEASE_POLL, release.stop_deadline))

    async def _transition(self, session: Session, transition: Transition) -> Session:
        updated = await self._kube.sessions.patch_status(session.ref, transition.patch)
        self._tell_transition(updated, transition)
        return updated

    def _tell_transition(self, session: Session, transition: Transition) -> None:
        self._tell(
            session, transition.event_reason, transition.event_note, warning=transition.warning
        )

    def _tell(self, session: Session, reason: str, note: str, *, warning: bool = False) -> None:
        """One lifecycle step, told twice: an Event on the Session, a line in the log."""
        state = session.status.state.value if session.status.state else ""
        logger.log(
            logging.WARNING if warning else logging.INFO,
            "%s %s (%s): %s",
            reason,
            session.ref,
            state,
            note,
            extra={"session": str(session.ref), "reason": reason, "state": state},
        )
        self._kube.events.record(session, reason, note, self._clock(), warning=warning)

    async def _settings_for(self, session: Session) -> LifecycleSettings:
        """The settings *session* is decided with: until it is initialised, within the
        SessionPolicies of its namespace, read now. A Session is initialised once, so a
        LIST per new Session (served from the apiserver's watch cache) costs less than a
        watch of every policy held by every replica, and it is never stale."""
        if self._kube.policies is None or session.deleting or session.lease() is not None:
            return self._settings
        policies = await self._kube.policies.list(session.ref.namespace)
        return within_policy(self._settings, merged(policies))

    async def _workload(self, session: Session) -> Workload | None:
        """The session's Pod as observed, or ``None`` when the lifecycle does not need it."""
        if not session.spec.has_template or session.status.state not in LIVE_STATES:
            return None
        pod = self._pod_store.get(session.ref, session.uid)
        if pod is None and session.status.state is not SessionState.NEW:
            await self._pods_listed()
            pod = self._pod_store.get(session.ref, session.uid)
        if pod is None and session.status.state is not SessionState.NEW:
            # Missing from the watch (just created, or really gone): ask before failing.
            try:
                pod = await self._kube.pods.read_workload(session)
            except NotFound:
                pod = None
            if pod is not None and pod.controller_uid != session.uid:
                pod = None  # named after it, but not its own: it says nothing of the session
            if pod is not None:
                self._pod_store.update(pod)
        return Workload(pod)

    async def _pods_listed(self) -> None:
        """Wait for the Pod watch's first listing, for at most :data:`POD_LISTING_WAIT`
        after the first reconcile that needed it: at a start or a takeover, the Pods
        missing from the store are then read in one listing, not by a GET each."""
        listed = self._pod_store.listed
        if listed.is_set():
            return
        now = asyncio.get_running_loop().time()
        if self._pod_listing_awaited_until is None:
            self._pod_listing_awaited_until = now + POD_LISTING_WAIT.total_seconds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listed.wait(), max(0.0, self._pod_listing_awaited_until - now))
