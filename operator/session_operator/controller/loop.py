"""The control loop: watch events in, reconciles out, one lease deadline per Session.

kopf delivers every watch event (``observe``) and, as a backstop, a label-filtered
timer for live Sessions (``recheck``). Both only queue the Session; workers reconcile
it and hand its lease deadline to the scheduler, which queues it again on the dot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from session_operator.controller.deadlines import DeadlineScheduler
from session_operator.controller.pods import PodStore
from session_operator.controller.reconciler import Reconciler
from session_operator.controller.store import SessionStore
from session_operator.controller.workqueue import WorkQueue
from session_operator.k8s.errors import KubernetesError
from session_operator.lease import LIVE_STATES, should_expire
from session_operator.models import Session, SessionRef
from session_operator.workload import summarize_pod

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

logger = logging.getLogger(__name__)


class NotLeading(Exception):
    """This replica is on standby; the leader takes lifecycle steps."""


class SessionController:
    """Queues Sessions from watch events and deadlines; reconciles them with N workers."""

    def __init__(
        self,
        reconciler: Reconciler,
        store: SessionStore,
        pods: PodStore,
        clock: Callable[[], datetime],
        leading: asyncio.Event,
        workers: int = 16,
    ) -> None:
        self.store = store
        self.pods = pods
        self.leading = leading
        self._reconciler = reconciler
        self._queue: WorkQueue[SessionRef] = WorkQueue()
        self._clock = clock
        self._deadlines: DeadlineScheduler[SessionRef] = DeadlineScheduler(self._queue.add, clock)
        self._workers = workers
        self._failures: dict[SessionRef, int] = {}

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take one watch event: remember the object and queue it (or forget it)."""
        session = Session.from_body(body)
        if event_type == "DELETED":
            self.store.remove(session.ref)
            self._deadlines.cancel(session.ref)
            return
        self.store.update(session)
        self._queue.add(session.ref)

    def observe_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take one watch event of a labelled Pod: remember it, queue its Session."""
        pod = summarize_pod(body)
        if pod is None:
            return
        if event_type == "DELETED":
            self.pods.remove(pod)
        else:
            self.pods.update(pod)
        self._queue.add(pod.session)

    def recheck(self, body: Mapping[str, Any]) -> None:
        """The periodic backstop: queue the Session if its lease has run out.

        The exact deadline should already have stopped it; a live session whose lease
        still runs costs nothing here (thousands of these fire every interval).
        """
        session = self.store.update(Session.from_body(body))
        lease = session.lease()
        if lease is None or should_expire(self._clock(), lease):
            self._queue.add(session.ref)

    def resync(self) -> None:
        """Queue every known Session (this replica just became the leader)."""
        for session in self.store:
            self._queue.add(session.ref)

    async def clean_up(self, body: Mapping[str, Any]) -> int:
        """Release a Session being deleted; how many of its objects still exist.

        Raises :class:`NotLeading` on a standby replica: only the leader writes.
        """
        if not self.leading.is_set():
            raise NotLeading("a standby replica does not release sessions")
        return await self._reconciler.clean_up(Session.from_body(body))

    async def run(self) -> None:
        """Run the deadline scheduler and the workers until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._deadlines.run())
            for _ in range(self._workers):
                tasks.create_task(self._work())

    async def _work(self) -> None:
        while True:
            await self.leading.wait()
            ref = await self._queue.get()
            try:
                await self._reconcile(ref)
            finally:
                self._queue.done(ref)

    async def _reconcile(self, ref: SessionRef) -> None:
        session = self.store.get(ref)
        if session is None:
            return
        try:
            outcome = await self._reconciler.reconcile(session)
        except KubernetesError as error:
            self._retry_later(session, error)
            return
        except Exception:
            logger.exception("%s: reconcile failed", ref)
            self._retry_later(session, None)
            return
        self._failures.pop(ref, None)
        if outcome.session is None:
            self.store.remove(ref)
            self._deadlines.cancel(ref)
            return
        self.store.update(outcome.session)
        if outcome.deadline is None:
            self._deadlines.cancel(ref)
        else:
            self._deadlines.schedule(ref, outcome.deadline)

    def _retry_later(self, session: Session, error: KubernetesError | None) -> None:
        ref = session.ref
        # A step that keeps failing (a refused Pod, say) must not hold the lease open.
        lease = session.lease()
        if lease is not None and lease.state in LIVE_STATES:
            self._deadlines.schedule(ref, lease.expires_at)
        failures = self._failures.get(ref, 0) + 1
        self._failures[ref] = failures
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
        if error is not None:
            logger.warning("%s: %s; retrying in %.1fs", ref, error, delay)
        self._queue.add_after(ref, delay)
