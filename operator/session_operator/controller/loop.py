"""The control loop: watch events in, reconciles out, one deadline per Session.

The informer's Session watch (``informer.session_cache.SessionCache``) delivers every
change (``update``, ``remove``, ``replace_all``), which queues the Session; the Pod watch
(``informer.pod_cache.PodCache``) delivers the workload Pods' (``pod_feed``). Workers
reconcile a Session and hand its next deadline (its lease's expiry, its start deadline
while it starts, or the instant its lease enters the expiry warning window until it is
warned) to the scheduler, which queues it again on the dot. One backstop for the whole
operator runs every ``expiryCheckInterval`` and queues the live Sessions whose deadline
has passed (the store knows them without looking at the others), in case a deadline was
missed. A key queued because its deadline came goes ahead of those queued by events, so
a lapse is acted on while thousands of routine reconciles wait (as after a takeover);
what a stop leaves for later (``Outcome.again``: its state label; while other stops are
due, the release of what it holds) is queued between the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from session_operator import metrics
from session_operator.controller.deadlines import DeadlineScheduler
from session_operator.controller.pod_feed import PodFeed
from session_operator.controller.reconciler import Reconciler
from session_operator.controller.workqueue import WorkQueue
from session_operator.informer.pod_store import PodStore
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.errors import ApiUnavailable, KubernetesError
from session_operator.lease import LIVE_STATES, next_deadline
from session_operator.models import Session, SessionRef

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
UNAVAILABLE_RETRY_MAX_SECONDS = 2.0
"""While the apiserver cannot be reached, look again this often at most: it may be back in
a second, and a deleted session or a stop waits for it."""

logger = logging.getLogger(__name__)


class SessionController:
    """Queues Sessions from watch events and deadlines; reconciles them with N workers."""

    def __init__(
        self,
        reconciler: Reconciler,
        store: SessionStore,
        pods: PodStore,
        clock: Callable[[], datetime],
        leading: asyncio.Event,
        expiry_check_interval: timedelta,
        workers: int = 16,
        exact_deadlines: bool = True,
    ) -> None:
        """*exact_deadlines* false leaves expiry to the backstop alone (a test of it)."""
        self.store = store
        self.pods = pods
        self.leading = leading
        self._reconciler = reconciler
        self._queue: WorkQueue[SessionRef] = WorkQueue(name="sessions")
        self._clock = clock
        self._deadlines: DeadlineScheduler[SessionRef] = DeadlineScheduler(
            self._queue.add_due, clock
        )
        self._exact_deadlines = exact_deadlines
        self._expiry_check_interval = expiry_check_interval
        self._workers = workers
        self._failures: dict[SessionRef, int] = {}
        self.pod_feed = PodFeed(pods, self._queue.add)
        """The sink of the Pod watch (``informer.pod_cache.PodCache``)."""

    def update(self, session: Session) -> None:
        """A Session was added or changed (a watch event): remember it and queue it."""
        self.store.update(session)
        self._queue.add(session.ref)

    def remove(self, ref: SessionRef) -> None:
        """A Session is gone (a watch event): forget it."""
        self.store.remove(ref)
        self._deadlines.cancel(ref)
        self._reconciler.forget(ref)

    def replace_all(self, sessions: Iterable[Session]) -> None:
        """A fresh listing: forget what it lacks, remember and queue what it holds."""
        listed = list(sessions)
        kept = {session.ref for session in listed}
        for gone in [session.ref for session in self.store if session.ref not in kept]:
            self._deadlines.cancel(gone)
            self._reconciler.forget(gone)
        self.store.replace_all(listed)
        for ref in kept:
            self._queue.add(ref)

    def mark_synced(self) -> None:
        """The store has seen every Session (a listing is loaded)."""
        self.store.mark_synced()

    def queue_lapsed(self) -> int:
        """The backstop: queue every live Session whose lease has run out; how many.

        The exact deadline should already have stopped each; this costs O(lapsed + log n),
        however many Sessions are live.
        """
        lapsed = self.store.lapsed(self._clock())
        for ref in lapsed:
            self._queue.add_due(ref)
        return len(lapsed)

    def resync(self) -> None:
        """Queue every known Session (this replica just became the leader).

        Each is reconciled once, since the previous leader may have left a step half
        done (a stop, a label). The live ones whose deadline (lease expiry or start
        deadline) has passed go first, earliest first; the other live ones get their
        deadline at once, so one that passes while the rest wait is queued ahead of them
        on the dot. Those deadlines are the store's, kept for the backstop: one pass, with
        no lease read again.
        """
        now = self._clock()
        for ref in self.store.lapsed(now):
            self._queue.add_due(ref)
        self._deadlines.schedule_all(self.store.live_deadlines())
        self._queue.add_all(session.ref for session in self.store)

    async def run(self) -> None:
        """Run the deadline scheduler, the backstop and the workers until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            if self._exact_deadlines:
                tasks.create_task(self._deadlines.run())
            tasks.create_task(self._backstop())
            for _ in range(self._workers):
                tasks.create_task(self._work())

    async def _backstop(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_check_interval.total_seconds())
            if self.leading.is_set() and (missed := self.queue_lapsed()):
                logger.info("expiry backstop queued %d lapsed session(s)", missed)

    async def _work(self) -> None:
        while True:
            await self.leading.wait()
            ref = await self._queue.get()
            try:
                # Leadership may have been lost while this worker waited for a key: a
                # standby takes no step (the next leader queues every Session again).
                if self.leading.is_set():
                    await self._reconcile(ref)
            finally:
                self._queue.done(ref)
            # A reconcile that finds nothing to do awaits nothing, and a waiting key is
            # taken without suspending: let the loop run between keys, or a backlog (after
            # a takeover, a restart) would hold back deadlines, heartbeats and the watch.
            await asyncio.sleep(0)

    async def _reconcile(self, ref: SessionRef) -> None:
        session = self.store.get(ref)
        if session is None:
            return
        try:
            outcome = await self._reconciler.reconcile(session, self._queue.due_waiting)
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
            self._reconciler.forget(ref)
            return
        if outcome.session is not session:  # most reconciles change nothing
            self.store.update(outcome.session)
        if outcome.deadline is None:
            self._deadlines.cancel(ref)
        else:
            self._deadlines.schedule(ref, outcome.deadline)
        if outcome.again:
            self._queue.add_follow_up(ref)

    def _retry_later(self, session: Session, error: KubernetesError | None) -> None:
        metrics.RECONCILE_ERRORS.inc()
        ref = session.ref
        # A step that keeps failing (a refused Pod, say) must not hold the lease open, nor
        # keep a session starting past its start deadline.
        lease = session.lease()
        if lease is not None and lease.state in LIVE_STATES:
            self._deadlines.schedule(ref, next_deadline(lease))
        failures = self._failures.get(ref, 0) + 1
        self._failures[ref] = failures
        cap = (
            UNAVAILABLE_RETRY_MAX_SECONDS
            if isinstance(error, ApiUnavailable)
            else RETRY_MAX_SECONDS
        )
        delay = min(cap, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
        if error is not None:
            logger.warning("%s: %s; retrying in %.1fs", ref, error, delay)
        self._queue.add_after(ref, delay)
