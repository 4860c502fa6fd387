"""The leader elector over a fake Lease store: who leads, on which clock, and what a leader
does when it can no longer renew or stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from session_operator.controller.election import LeaderElector
from session_operator.k8s.errors import ApiUnavailable, PreconditionFailed
from session_operator.k8s.leader_lease import LeaseApi
from session_operator.leadership import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, LeaseRecord

START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, skew: timedelta = timedelta(0)) -> None:
        self.true_time = START
        self.skew = skew

    def __call__(self) -> datetime:
        return self.true_time + self.skew


class FakeLeases(LeaseApi):
    """One Lease, written with a resourceVersion precondition; can be made unreachable."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False

    async def read(self) -> tuple[LeaseRecord | None, str | None]:
        if self.down:
            raise ApiUnavailable("apiserver down")
        return self.record, str(self.version) if self.record else None

    async def write(self, record: LeaseRecord, resource_version: str | None) -> str:
        if self.down:
            raise ApiUnavailable("apiserver down")
        if self.record is not None and resource_version != str(self.version):
            raise PreconditionFailed("conflict")
        self.record, self.version = record, self.version + 1
        return str(self.version)


def elector(leases: FakeLeases, name: str, clock: Clock) -> LeaderElector:
    return LeaderElector(leases, name, clock, asyncio.Event(), lambda: None)


async def step(electors: list[LeaderElector], clocks: list[Clock], rounds: int) -> None:
    """*rounds* retry periods: every elector tries once per period, then time moves on."""
    for _ in range(rounds):
        for one in electors:
            await one._attempt()
        for clock in clocks:
            clock.true_time += RETRY_PERIOD


@pytest.mark.parametrize("skew", [timedelta(seconds=30), timedelta(seconds=-30)])
async def test_a_standby_with_a_skewed_clock_never_takes_a_renewing_leaders_lease(
    skew: timedelta,
) -> None:
    leases = FakeLeases()
    leader_clock, standby_clock = Clock(), Clock(skew)
    leader = elector(leases, "leader", leader_clock)
    standby = elector(leases, "standby", standby_clock)
    await step([leader, standby], [leader_clock, standby_clock], rounds=30)
    assert leader.leading.is_set()
    assert not standby.leading.is_set()
    assert leases.record is not None
    assert leases.record.holder == "leader"


async def test_a_standby_takes_over_a_lease_duration_after_the_leader_stops_renewing() -> None:
    leases = FakeLeases()
    leader_clock, standby_clock = Clock(), Clock(timedelta(seconds=30))
    leader = elector(leases, "leader", leader_clock)
    standby = elector(leases, "standby", standby_clock)
    await step([leader, standby], [leader_clock, standby_clock], rounds=3)
    rounds_without_leader = 0
    while not standby.leading.is_set():
        await step([standby], [leader_clock, standby_clock], rounds=1)
        rounds_without_leader += 1
    waited = RETRY_PERIOD * rounds_without_leader
    assert LEASE_DURATION <= waited <= LEASE_DURATION + 2 * RETRY_PERIOD
    assert leases.record is not None
    assert leases.record.transitions == 1


async def test_a_leader_that_cannot_renew_stops_leading_at_the_renew_deadline() -> None:
    leases = FakeLeases()
    clock = Clock()
    leader = elector(leases, "leader", clock)
    await step([leader], [clock], rounds=1)
    assert leader.leading.is_set()
    leases.down = True
    rounds = 0
    while leader.leading.is_set():
        await step([leader], [clock], rounds=1)
        rounds += 1
    assert RENEW_DEADLINE <= RETRY_PERIOD * rounds <= RENEW_DEADLINE + RETRY_PERIOD


async def test_a_leader_that_stops_releases_the_lease_for_the_next_at_once() -> None:
    leases = FakeLeases()
    clock = Clock()
    leader = elector(leases, "leader", clock)
    task = asyncio.create_task(leader.run())
    await asyncio.wait_for(leader.leading.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases.record is not None
    assert leases.record.holder is None
    successor = elector(leases, "successor", Clock(timedelta(seconds=5)))
    await successor._attempt()
    assert successor.leading.is_set()


class LostAnswers(FakeLeases):
    """Writes are stored, but from *after* on their answers never arrive (the caller
    waits until it is cancelled), as when a shutdown cuts a renewal short."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.answered = after

    async def write(self, record: LeaseRecord, resource_version: str | None) -> str:
        version = await super().write(record, resource_version)
        self.answered -= 1
        if self.answered < 0 and record.holder is not None:
            await asyncio.sleep(3600)
        return version


async def test_a_leader_stopped_while_a_renewal_is_unanswered_still_releases_the_lease() -> None:
    leases = LostAnswers(after=1)
    leader = elector(leases, "leader", Clock())
    await leader._attempt()
    assert leader.leading.is_set()
    renewal = asyncio.create_task(leader.run())
    await asyncio.sleep(0.05)  # the renewal is written, its answer never comes
    assert leases.version == 2
    renewal.cancel()
    with pytest.raises(asyncio.CancelledError):
        await renewal
    assert leases.record is not None
    assert leases.record.holder is None
    assert not leader.leading.is_set()


async def test_a_replica_that_never_led_writes_nothing_when_it_stops() -> None:
    leases = FakeLeases()
    await elector(leases, "leader", Clock())._attempt()
    standby = elector(leases, "standby", Clock())
    task = asyncio.create_task(standby.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases.record is not None
    assert leases.record.holder == "leader"
    assert leases.version == 1


class HangingLeases(FakeLeases):
    """A Lease whose calls, once *hanging* is set, are never answered."""

    hanging = False

    async def read(self) -> tuple[LeaseRecord | None, str | None]:
        if self.hanging:
            await asyncio.sleep(3600)
        return await super().read()


async def test_a_leader_whose_lease_calls_hang_stops_leading_at_the_renew_deadline() -> None:
    leases = HangingLeases()
    clock = Clock()
    leader = elector(leases, "leader", clock)
    await leader._attempt()
    assert leader.leading.is_set()
    leases.hanging = True
    clock.true_time += RENEW_DEADLINE - timedelta(seconds=0.2)
    # The attempt gives up when the deadline comes, not when the apiserver answers.
    await asyncio.wait_for(leader._attempt(), timeout=1)
    clock.true_time += timedelta(seconds=0.2)
    await asyncio.wait_for(leader._attempt(), timeout=1)
    assert not leader.leading.is_set()
