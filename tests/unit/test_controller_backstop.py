"""The expiry backstop: one task for the operator queues the live Sessions whose lease ran
out, so a lapsed session is stopped within one expiryCheckInterval even without its exact
deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Outcome, Reconciler
from session_operator.models import Session, SessionRef
from tests.unit.builders import EXPIRY_CHECK, NOW, controller_without_deadlines, leased_body


class StopsNothing(Reconciler):
    """A reconciler that records each Session it is given and leaves it as it is (as when
    the first stop attempt was lost), asking to look again at its lease's expiry."""

    def __init__(self) -> None:
        self.reconciled: list[str] = []

    def forget(self, ref: SessionRef) -> None:
        pass  # keeps nothing of a stop

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
        self.reconciled.append(session.ref.name)
        return Outcome(session, session.status.lease_expires_at)


async def run_for(controller: SessionController, seconds: float) -> None:
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_with_the_heap_off_a_lapsed_session_is_queued_again_every_check() -> None:
    reconciler = StopsNothing()
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(leased_body("lapsed", NOW - timedelta(seconds=1))))
    controller.update(Session.from_body(leased_body("live", NOW + timedelta(hours=1))))
    await run_for(controller, EXPIRY_CHECK.total_seconds() * 2.5)
    # Once for the watch event, then once per backstop check: the lapsed one only.
    assert reconciler.reconciled.count("lapsed") == 3
    assert reconciler.reconciled.count("live") == 1


async def test_a_standby_replica_queues_nothing() -> None:
    reconciler = StopsNothing()
    controller = controller_without_deadlines(reconciler)
    controller.leading.clear()
    controller.update(Session.from_body(leased_body("lapsed", NOW - timedelta(seconds=1))))
    assert controller.queue_lapsed() == 1  # it knows, but its loop waits for leadership
    await run_for(controller, EXPIRY_CHECK.total_seconds() * 2.5)
    assert reconciler.reconciled == []
