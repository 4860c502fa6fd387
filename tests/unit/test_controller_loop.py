"""The control loop around the reconciler: retries with backoff, forgetting deleted
Sessions, taking a written version into the store, what a new leader reconciles first."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from session_operator.controller import loop
from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Outcome, Reconciler
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.errors import ApiUnavailable
from session_operator.models import Session, SessionRef
from tests.unit.builders import NOW, controller_without_deadlines, leased_body, listed_pods


class FailsThenWrites(Reconciler):
    """Fails *failures* times as if the apiserver were down, then writes a new version."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []

    def forget(self, ref: SessionRef) -> None:
        pass  # keeps nothing of a stop

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
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
    controller.update(Session.from_body(leased_body("s", NOW + timedelta(hours=1))))
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
    controller.update(Session.from_body(leased_body("s", NOW + timedelta(hours=1))))
    controller.remove(SessionRef(namespace="media", name="s"))
    assert controller.store.get(SessionRef(namespace="media", name="s")) is None
    with contextlib.suppress(TimeoutError):
        await run_until(controller, lambda: bool(reconciler.attempts), seconds=0.3)
    assert reconciler.attempts == []


async def test_a_relisting_forgets_what_it_lacks_and_queues_what_it_holds() -> None:
    reconciler = FailsThenWrites(failures=0)
    controller = controller_without_deadlines(reconciler)
    controller.update(Session.from_body(leased_body("gone", NOW + timedelta(hours=1))))
    controller.replace_all([Session.from_body(leased_body("kept", NOW + timedelta(hours=1)))])
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
    controller.update(Session.from_body(leased_body("s", NOW + timedelta(hours=1))))
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
    controller.update(Session.from_body(leased_body("s", NOW + timedelta(hours=1))))
    await run_until(controller, lambda: len(reconciler.attempts) == 6, seconds=5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(reconciler.attempts)]
    assert max(gaps) < 0.2, gaps  # 0.05, 0.1, then capped at 0.1 (not 0.2, 0.4, ...)


class Records(Reconciler):
    """Records each Session it is given, on the controller's clock, after *pause* seconds
    (a reconcile that finds nothing to do still takes a moment); asks for no deadline."""

    def __init__(self, clock: Callable[[], datetime], pause: float = 0.0) -> None:
        self.clock = clock
        self.pause = pause
        self.reconciled: list[tuple[str, datetime]] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.reconciled]

    def forget(self, ref: SessionRef) -> None:
        pass  # keeps nothing of a stop

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
        self.reconciled.append((session.ref.name, self.clock()))
        await asyncio.sleep(self.pause)
        return Outcome(session, None)


def standby(reconciler: Reconciler, clock: Callable[[], datetime]) -> SessionController:
    """A controller of a replica that does not lead (yet), with one worker."""
    return SessionController(
        reconciler, SessionStore(), listed_pods(), clock, asyncio.Event(), timedelta(hours=1),
        workers=1,
    )  # fmt: skip


def queue_behind(controller: SessionController, count: int, soon: datetime) -> list[str]:
    """Tell *controller* of *count* Sessions leased for an hour, then of ``soon``, whose
    lease ends at *soon*; the names of the former."""
    names = [f"live-{index}" for index in range(count)]
    for name in names:
        controller.update(Session.from_body(leased_body(name, NOW + timedelta(hours=1))))
    controller.update(Session.from_body(leased_body("soon", soon)))
    return names


async def test_a_new_leader_reconciles_the_lapsed_sessions_first_then_every_other_once() -> None:
    reconciler = Records(lambda: NOW)
    controller = standby(reconciler, lambda: NOW)
    names = [f"live-{index}" for index in range(2000)]
    # As a standby it hears of every Session (the lapsed ones last) and acts on none.
    for name in names:
        controller.update(Session.from_body(leased_body(name, NOW + timedelta(hours=1))))
    controller.update(Session.from_body(leased_body("lapsed-late", NOW - timedelta(seconds=1))))
    controller.update(Session.from_body(leased_body("lapsed-early", NOW - timedelta(seconds=5))))
    stopped = leased_body("stopped", NOW - timedelta(hours=1), "stopped")
    controller.update(Session.from_body(stopped))

    controller.leading.set()
    controller.resync()
    await run_until(controller, lambda: len(reconciler.reconciled) >= 2003, seconds=10)

    assert reconciler.names[:2] == ["lapsed-early", "lapsed-late"]
    assert sorted(reconciler.names) == sorted([*names, "lapsed-late", "lapsed-early", "stopped"])


async def test_a_lease_that_lapses_while_a_new_leader_resyncs_is_reconciled_on_the_dot() -> None:
    loop_time = asyncio.get_running_loop().time
    started = loop_time()

    def clock() -> datetime:
        return NOW + timedelta(seconds=loop_time() - started)

    reconciler = Records(clock, pause=0.002)
    controller = standby(reconciler, clock)
    soon = NOW + timedelta(seconds=0.1)
    names = queue_behind(controller, 300, soon)

    controller.leading.set()
    controller.resync()
    await run_until(controller, lambda: len(reconciler.reconciled) >= 301, seconds=10)

    # Queued last, but its deadline fires while the others wait: it goes ahead of them.
    at = dict(reconciler.reconciled)["soon"]
    assert reconciler.names.index("soon") < len(names) // 2
    assert soon <= at < soon + timedelta(seconds=0.5)
    assert reconciler.names.count("soon") == 1


class Busy(Records):
    """Records each Session after *cpu* seconds of work, without ever suspending: a
    reconcile that finds nothing to do makes no call, so it awaits nothing."""

    def __init__(self, clock: Callable[[], datetime], cpu: float) -> None:
        super().__init__(clock)
        self.cpu = cpu

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
        self.reconciled.append((session.ref.name, self.clock()))
        until = time.perf_counter() + self.cpu
        while time.perf_counter() < until:
            pass
        return Outcome(session, None)


async def test_a_backlog_of_reconciles_that_await_nothing_leaves_the_loop_to_the_others() -> None:
    loop_time = asyncio.get_running_loop().time
    started = [loop_time()]

    def clock() -> datetime:
        return NOW + timedelta(seconds=loop_time() - started[0])

    # 4,000 reconciles of 0.25 ms: a second of work that never suspends by itself.
    reconciler = Busy(clock, cpu=0.00025)
    controller = standby(reconciler, clock)
    soon = NOW + timedelta(seconds=0.3)
    names = queue_behind(controller, 4000, soon)

    started[0] = loop_time()
    controller.leading.set()
    controller.resync()
    await run_until(controller, lambda: len(reconciler.reconciled) >= 4001, seconds=20)

    # The deadline's timer ran while the backlog was worked through, not after it.
    at = dict(reconciler.reconciled)["soon"]
    assert soon <= at < soon + timedelta(seconds=0.3)
    assert reconciler.names.index("soon") < len(names) * 3 // 4


class StopsThenLabels(Records):
    """Stops a lapsed Session in a pass that leaves its label to a follow-up one
    (``Outcome.again``), noting whether other stops were due then; the next pass writes
    the label. Records every other pass as routine."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock)
        self.steps: list[tuple[str, str]] = []
        self.others_due: list[bool] = []

    async def reconcile(
        self, session: Session, others_due: Callable[[], bool] = lambda: False
    ) -> Outcome:
        name = session.ref.name
        if not name.startswith("lapsed"):
            self.steps.append((name, "routine"))
            return await super().reconcile(session)
        if (name, "stop") not in self.steps:
            self.steps.append((name, "stop"))
            self.others_due.append(others_due())
            return Outcome(session, None, again=True)
        self.steps.append((name, "label"))
        return Outcome(session, None)


async def test_a_new_leader_stops_every_lapsed_session_before_it_writes_their_labels() -> None:
    reconciler = StopsThenLabels(lambda: NOW)
    controller = standby(reconciler, lambda: NOW)
    lapsed = [f"lapsed-{index}" for index in range(50)]
    for index, name in enumerate(lapsed):
        body = leased_body(name, NOW - timedelta(seconds=60 - index))
        controller.update(Session.from_body(body))

    controller.leading.set()
    controller.resync()
    await run_until(controller, lambda: len(reconciler.steps) >= 100, seconds=10)

    stops = [(name, "stop") for name in lapsed]
    assert reconciler.steps[:50] == stops
    assert sorted(reconciler.steps[50:]) == sorted((name, "label") for name in lapsed)


async def test_stops_know_while_others_wait_and_their_follow_ups_go_before_routine_work() -> None:
    reconciler = StopsThenLabels(lambda: NOW)
    controller = standby(reconciler, lambda: NOW)
    lapsed = [f"lapsed-{index}" for index in range(10)]
    for index, name in enumerate(lapsed):
        controller.update(Session.from_body(leased_body(name, NOW - timedelta(seconds=60 - index))))
    live = [f"live-{index}" for index in range(20)]
    for name in live:
        controller.update(Session.from_body(leased_body(name, NOW + timedelta(hours=1))))

    controller.leading.set()
    controller.resync()
    await run_until(controller, lambda: len(reconciler.steps) >= 40, seconds=10)

    # One worker: each stop but the last has others waiting behind it.
    assert reconciler.others_due == [True] * 9 + [False]
    assert reconciler.steps[:10] == [(name, "stop") for name in lapsed]
    assert sorted(reconciler.steps[10:20]) == sorted((name, "label") for name in lapsed)
    assert sorted(reconciler.steps[20:]) == sorted((name, "routine") for name in live)
