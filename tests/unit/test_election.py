"""The leader elector over a fake Lease store: who leads, on which clock, and what a leader
does when it can no longer renew or stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from session_operator.controller.election import LeaderElector
from session_operator.k8s.errors import ApiUnavailable, PreconditionFailed
from session_operator.k8s.leader_lease import LeaseApi
from session_operator.leadership import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, LeaseRecord

START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
EPSILON = timedelta(milliseconds=1)
"""How late a takeover may come in a fake world where calls take no time."""


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


@dataclass
class Replica:
    """An elector that attempts when its last attempt asked to (as ``run`` sleeps)."""

    elector: LeaderElector
    clock: Clock
    next_attempt: datetime = START


async def run_replicas(replicas: list[Replica], until: Callable[[], bool]) -> datetime:
    """Play the replicas' attempts in true-time order until *until* holds after one;
    the true time of that attempt."""
    for _ in range(1000):
        replica = min(replicas, key=lambda one: one.next_attempt)
        for one in replicas:
            one.clock.true_time = replica.next_attempt
        replica.next_attempt += await replica.elector._attempt()
        if until():
            return replica.clock.true_time
    raise AssertionError("never happened")


async def leader_killed_after_a_minute(
    leases: FakeLeases, standby: Replica
) -> tuple[datetime, datetime]:
    """A leader renews for a minute beside *standby*, then dies right after a renewal;
    its last renewal and when *standby* took over, both in true time."""
    clock = Clock()
    leader = Replica(elector(leases, "leader", clock), clock)
    await run_replicas(
        [leader, standby], lambda: leader.clock.true_time >= START + timedelta(minutes=1)
    )
    assert leader.elector.leading.is_set()
    assert not standby.elector.leading.is_set()
    assert leases.record is not None
    assert leases.record.holder == "leader"
    assert leases.record.renewed_at is not None
    last_renewal = leases.record.renewed_at
    taken_at = await run_replicas([standby], standby.elector.leading.is_set)
    assert leases.record.holder == "standby"
    assert leases.record.transitions == 1
    return last_renewal, taken_at


@pytest.mark.parametrize("lag", [timedelta(0), timedelta(seconds=1), timedelta(seconds=1.99)])
async def test_a_dead_leader_is_replaced_a_lease_duration_after_its_last_renewal(
    lag: timedelta,
) -> None:
    # The standby reads *lag* after each renewal: it is not what decides the takeover.
    leases = FakeLeases()
    clock = Clock()
    standby = Replica(elector(leases, "standby", clock), clock, START + lag)
    last_renewal, taken_at = await leader_killed_after_a_minute(leases, standby)
    assert LEASE_DURATION <= taken_at - last_renewal <= LEASE_DURATION + EPSILON


async def test_a_standby_whose_clock_is_ahead_takes_over_only_after_the_renew_deadline() -> None:
    # The leader's renewTime looks 30 s old to the standby: not trusted that far.
    leases = FakeLeases()
    clock = Clock(timedelta(seconds=30))
    standby = Replica(elector(leases, "standby", clock), clock, START + timedelta(seconds=1))
    last_renewal, taken_at = await leader_killed_after_a_minute(leases, standby)
    seen_at = last_renewal + timedelta(seconds=1)
    assert taken_at - seen_at == LEASE_DURATION - RETRY_PERIOD
    assert taken_at - last_renewal > RENEW_DEADLINE


async def test_a_lease_renewed_in_the_future_is_not_taken_early() -> None:
    # The standby's clock is behind: the leader's renewTime lies 30 s ahead of it.
    leases = FakeLeases()
    clock = Clock(timedelta(seconds=-30))
    standby = Replica(elector(leases, "standby", clock), clock, START + timedelta(seconds=1))
    last_renewal, taken_at = await leader_killed_after_a_minute(leases, standby)
    seen_at = last_renewal + timedelta(seconds=1)
    assert taken_at - seen_at == LEASE_DURATION


async def test_after_a_failed_read_a_standby_waits_a_whole_retry_period() -> None:
    leases = FakeLeases()
    await elector(leases, "leader", Clock())._attempt()
    clock = Clock()
    standby = elector(leases, "standby", clock)
    assert await standby._attempt() == RETRY_PERIOD
    clock.true_time += LEASE_DURATION - timedelta(seconds=1)
    assert await standby._attempt() == timedelta(seconds=1)
    leases.down = True
    clock.true_time += timedelta(seconds=1)
    # The Lease it saw has run out, but a failing apiserver is not asked in a busy loop.
    assert await standby._attempt() == RETRY_PERIOD
    assert not standby.leading.is_set()


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
