"""The control loop around the reconciler: retries with backoff, forgetting deleted
Sessions, taking a written version into the store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest

from session_operator.controller import loop
from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Outcome, Reconciler
from session_operator.k8s.errors import ApiUnavailable
from session_operator.models import Session, SessionRef
from tests.unit.test_controller_backstop import NOW, body, controller_without_deadlines


class FailsThenWrites(Reconciler):
    """Fails *failures* times as if the apiserver were down, then writes a new version."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []

    async def reconcile(self, session: Session) -> Outcome:
        self.attempts.append(asyncio.get_running_loop().time())
        if len(self.attempts) <= self.failures:
            raise ApiUnavailable("connection refused")
        written = dataclasses.replace(session, resource_version="99")
        return Outcome(written, None)


async def run_until(
    controller: SessionController, done: Callable[[], bool], seconds: float
) -> None:
    """Run *controller* until *done* holds (at most *seconds*)."""
    task = asyncio.create_task(controller.run())
    try:
        for _ in range(int(seconds / 0.02)):
            if done():
                return
            await asyncio.sleep(0.02)
        raise TimeoutError
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failing_reconcile_is_retried_with_a_doubling_backoff() -> None:
    reconciler = FailsThenWrites(failures=2)
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(body("s", NOW + timedelta(hours=1))))
    await run_until(controller, lambda: len(reconciler.attempts) == 3, seconds=5)
    first, second = (
        reconciler.attempts[1] - reconciler.attempts[0],
        reconciler.attempts[2] - reconciler.attempts[1],
    )
    assert 0.45 <= first < 0.9  # RETRY_FIRST_SECONDS
    assert 0.95 <= second < 1.6  # doubled
    stored = controller.store.get(SessionRef(namespace="media", name="s"))
    assert stored is not None
    assert stored.resource_version == "99"  # the written version is what the store holds


async def test_a_deleted_session_is_forgotten_and_not_reconciled() -> None:
    reconciler = FailsThenWrites(failures=0)
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(body("s", NOW + timedelta(hours=1))))
    controller.remove(SessionRef(namespace="media", name="s"))
    assert controller.store.get(SessionRef(namespace="media", name="s")) is None
    with contextlib.suppress(TimeoutError):
        await run_until(controller, lambda: bool(reconciler.attempts), seconds=0.3)
    assert reconciler.attempts == []


async def test_a_relisting_forgets_what_it_lacks_and_queues_what_it_holds() -> None:
    reconciler = FailsThenWrites(failures=0)
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(body("gone", NOW + timedelta(hours=1))))
    controller.replace_all([Session.from_body(body("kept", NOW + timedelta(hours=1)))])
    controller.mark_synced()

    assert controller.store.synced
    assert controller.store.get(SessionRef(namespace="media", name="gone")) is None
    await run_until(controller, lambda: len(reconciler.attempts) == 1, seconds=2)
    stored = controller.store.get(SessionRef(namespace="media", name="kept"))
    assert stored is not None
    assert stored.resource_version == "99"


async def test_a_worker_that_lost_the_lead_while_waiting_takes_no_step() -> None:
    reconciler = FailsThenWrites(failures=0)
    controller = controller_without_deadlines(reconciler)
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.05)  # the workers wait for a key, as leader
    controller.leading.clear()
    controller.update(Session.from_body(body("s", NOW + timedelta(hours=1))))
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert reconciler.attempts == []


async def test_retries_while_the_apiserver_is_unreachable_stay_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loop, "RETRY_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(loop, "UNAVAILABLE_RETRY_MAX_SECONDS", 0.1)
    reconciler = FailsThenWrites(failures=5)
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(body("s", NOW + timedelta(hours=1))))
    await run_until(controller, lambda: len(reconciler.attempts) == 6, seconds=5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(reconciler.attempts)]
    assert max(gaps) < 0.2, gaps  # 0.05, 0.1, then capped at 0.1 (not 0.2, 0.4, ...)
