"""The faults, and the scenario each runs in.

Every fault runs the same scenario in a namespace of its own (:func:`run_fault`): sessions
are created and beaten; a third of the clients die well before the fault (their leases must
expire as usual), others die right before it (alive when it begins: lease rule 8 may owe them
a grace); half of the stops and deletes happen before the fault, half after it; then the
harness waits for every outcome and judges the invariants.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chaos.invariants import Intent, Verdict, Window
from chaos.phase import Phase, intents
from chaos.world import World

TTL, INTERVAL = 30, 5
"""The lease of every session under fault: a 30 s TTL and a 5 s interval."""
STALL_SECONDS = 40.0
BURST_CLIENTS, BURST_SECONDS, BURST_SESSIONS = 25, 12.0, 4


@dataclass
class Injection:
    """One fault injected: the span it lasted until the system was whole again."""

    what: str
    window: Window
    recovery: float


@dataclass
class FaultResult:
    """A row of the table."""

    fault: str
    verdict: Verdict
    injections: list[Injection] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)

    @property
    def recovery(self) -> float | None:
        """The longest recovery among the injections (``None``: nothing to recover from)."""
        return max((i.recovery for i in self.injections), default=None)


Inject = Callable[[World, Phase, random.Random], Awaitable[list[Injection]]]


async def run_fault(world: World, fault: str, sessions: int, rng: random.Random) -> FaultResult:
    """Run the scenario around fault *fault* with *sessions* sessions; judge it."""
    phase = Phase(world, fault, TTL, INTERVAL)
    await phase.open()
    plan = intents(sessions, rng)
    await phase.add_many([(f"s{i:03d}", *entry) for i, entry in enumerate(plan)])
    dropping = phase.named(Intent.DROP)
    early, late = dropping[::2], dropping[1::2]
    # Stops of sessions with a workload wait until after the fault (one may be released
    # during it); the others are split.
    kept = phase.named(Intent.USER_STOP, workload=True)
    stopping = (*phase.named(Intent.USER_STOP), *phase.named(Intent.DELETE))
    stops = [name for name in stopping if name not in kept]
    rng.shuffle(stops)
    before, after = stops[: len(stops) // 2], [*stops[len(stops) // 2 :], *kept]

    await phase.act(early)  # gone well before the fault: more than two intervals
    await asyncio.sleep(3 * INTERVAL + 1)
    await phase.act(before)
    await phase.act(late)  # alive when the fault begins
    injections = await FAULTS[fault](world, phase, rng)
    phase.faults.extend(injection.window for injection in injections)
    await phase.act(name for name in after if phase.records[name].acted_at is None)
    await phase.settle()
    verdict = await phase.verdict()
    await phase.close()
    return FaultResult(fault, verdict, injections, phase.remarks)


async def _recover(phase: Phase, what: str, start: float, recovery_from: float) -> Injection:
    recovered = await phase.recovered(after=recovery_from)
    return Injection(what, Window(start, recovered), recovered - recovery_from)


async def leader_kill(world: World, phase: Phase, rng: random.Random) -> list[Injection]:
    """SIGKILL the leader three times: while it stops expired sessions, while it releases a
    session's Pod, and while a heartbeat it serves is in flight."""
    injections = []
    gone = [r for r in phase.records.values() if r.intent is Intent.DROP and r.acted_at]
    await phase.until(lambda: any(r.stop for r in gone), 3 * TTL, "first expiry")
    await asyncio.sleep(rng.uniform(0, 0.05))  # between its writes: status, label, Event
    injections.append(await _kill_leader(world, phase, "mid-stop"))

    releasing = phase.named(Intent.USER_STOP, workload=True)
    target = next(n for n in releasing if phase.records[n].acted_at is None)
    await phase.act([target])
    await phase.until(lambda: phase.records[target].stop is not None, 30, f"{target} stopping")
    injections.append(await _kill_leader(world, phase, "mid-release"))

    injections.append(await _kill_leader_mid_heartbeat(world, phase, rng))
    return injections


async def _kill_leader(world: World, phase: Phase, what: str) -> Injection:
    leader, _ = await world.leader()
    if leader is None:
        raise RuntimeError("no live replica holds the leader Lease")
    killed_at = time.time()
    leader.kill()
    phase.kills.append(killed_at)
    restart = asyncio.create_task(leader.start(world.http))
    injection = await _recover(phase, what, killed_at, killed_at)
    await restart
    return injection


async def _kill_leader_mid_heartbeat(world: World, phase: Phase, rng: random.Random) -> Injection:
    leader, _ = await world.leader()
    proxy = world.proxy
    if leader is None or proxy is None:
        raise RuntimeError("no live replica holds the leader Lease")
    killed = asyncio.Event()
    delay = rng.uniform(0, 0.02)

    def kill_when_beaten(port: int) -> None:
        if port == leader.port and not killed.is_set():
            killed.set()
            asyncio.get_running_loop().call_later(delay, leader.kill)

    proxy.on_request = kill_when_beaten
    try:
        await asyncio.wait_for(killed.wait(), 6 * INTERVAL)
    finally:
        proxy.on_request = None
    killed_at = time.time() + delay
    phase.kills.append(killed_at)
    await asyncio.sleep(delay + 0.05)
    restart = asyncio.create_task(leader.start(world.http))
    injection = await _recover(phase, "mid-heartbeat", killed_at, killed_at)
    await restart
    return injection


async def apiserver_restart(world: World, phase: Phase, rng: random.Random) -> list[Injection]:
    """Stop kube-apiserver and start it again (same flags, same etcd)."""
    return [await _restart(world, phase, "kube-apiserver")]


async def etcd_restart(world: World, phase: Phase, rng: random.Random) -> list[Injection]:
    """Stop etcd and start it again on the same data."""
    return [await _restart(world, phase, "etcd")]


async def _restart(world: World, phase: Phase, component: str) -> Injection:
    started = time.time()
    await asyncio.to_thread(world.control_plane.restart, component)
    return await _recover(phase, f"{component} restart", started, started)


async def apiserver_stall(world: World, phase: Phase, rng: random.Random) -> list[Injection]:
    """SIGSTOP kube-apiserver for 40 s, then SIGCONT."""
    pid = world.control_plane.component("kube-apiserver").pid
    started = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL_SECONDS)
    finally:
        os.kill(pid, signal.SIGCONT)
    return [await _recover(phase, "kube-apiserver stall", started, time.time())]


async def conflicting_burst(world: World, phase: Phase, rng: random.Random) -> list[Injection]:
    """Many clients beat the same sessions at once, as fast as they are answered."""
    targets = phase.named(Intent.BEAT)[:BURST_SESSIONS]
    for name in targets:
        await world.clients.send(
            "burst", session=f"{phase.namespace}/{name}", clients=BURST_CLIENTS,
            seconds=BURST_SECONDS,
        )  # fmt: skip
    for name in targets:
        await asyncio.wait_for(
            world.clients.fact("burst", f"{phase.namespace}/{name}"), BURST_SECONDS + 30
        )
    return []


FAULTS: dict[str, Inject] = {
    "leader-kill": leader_kill,
    "apiserver-restart": apiserver_restart,
    "etcd-restart": etcd_restart,
    "apiserver-stall": apiserver_stall,
    "conflicting-burst": conflicting_burst,
}
