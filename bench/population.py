"""Putting Sessions in place: through the operator, or seeded.

The first population is created the way users create Sessions, and the operator makes each
one ready (7 writes per session, measured). The large one would take minutes that way, so
it is *seeded*: the benchmark creates every Session exactly as the operator leaves a ready
one (the status from the operator's own lifecycle function, the state label, kopf's
finalizer and annotations), 2 writes per session, and the operator adopts them as they come.
The operator is not restarted for it: a restart is a span without a leader, which the
operator rightly records as an outage and forgives lapses in (lease rule 8).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.context import SETUP_CONCURRENCY, Bench, SessionName
from bench.cost import ProcessCost
from bench.load import bounded_gather
from harness.kube import ApiCalls, ApiServer
from session_operator.config import Settings
from session_operator.k8s.rest import MERGE_PATCH
from session_operator.lifecycle import InitialiseStatus, LifecycleSettings, next_step
from session_operator.models import FINALIZER, STATE_LABEL, Session, sessions_path

Lease = dict[str, int]


@dataclass
class Population:
    """Sessions added for one stage, and how long until the operator held them all."""

    live: int
    created: int
    create_seconds: float
    ready_seconds: float
    calls: ApiCalls
    cost: dict[str, ProcessCost]
    seeded: bool = False

    @property
    def writes_per_session(self) -> float:
        """Successful writes per created session until all were quiet (the benchmark's
        own included: one create, and for seeded sessions one status write)."""
        return self.calls.writes / self.created if self.created else math.nan

    @property
    def operator_writes_per_session(self) -> float:
        """The operator's share of :attr:`writes_per_session`."""
        own = self.created * (2 if self.seeded else 1)
        return (self.calls.writes - own) / self.created if self.created else math.nan


def session_body(ref: SessionName, lease: Lease) -> dict[str, Any]:
    """A Session as a user applies it."""
    return {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
        "spec": {"lease": lease},
    }


def adopted_body(ref: SessionName, lease: Lease) -> dict[str, Any]:
    """A Session as the operator leaves a ready one, less its status: the state label and
    the operator's finalizer (so it writes nothing)."""
    body = session_body(ref, lease)
    body["metadata"]["labels"] = {STATE_LABEL: "ready"}
    body["metadata"]["finalizers"] = [FINALIZER]
    return body


def default_lifecycle() -> LifecycleSettings:
    """The operator's lifecycle settings at its defaults."""
    return LifecycleSettings.of(Settings())


async def create_initialised(
    api: ApiServer, body: dict[str, Any], lifecycle: LifecycleSettings, state: str = "ready"
) -> None:
    """Create *body*, then write the first status the operator's lifecycle gives it (in
    *state*: ``ready``, or ``new`` for a Session with a template)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    created = await api.expect("POST", sessions_path(namespace), body)
    step = next_step(Session.from_body(created), datetime.now(UTC), lifecycle, None)
    if not isinstance(step, InitialiseStatus) or step.status.get("state") != state:
        raise RuntimeError(f"the operator's lifecycle would not make {name} {state}: {step!r}")
    path = sessions_path(namespace, name, "status")
    await api.expect("PATCH", path, {"status": step.status}, MERGE_PATCH)


async def seed_unwatched(api: ApiServer, refs: Sequence[SessionName]) -> None:
    """Ready Sessions in a namespace the operator does not watch (for the raw ceiling)."""
    lifecycle = default_lifecycle()

    async def create(ref: SessionName) -> None:
        await create_initialised(api, session_body(ref, {"ttlSeconds": 10800,
                                                         "heartbeatIntervalSeconds": 3600}),
                                 lifecycle)  # fmt: skip

    await bounded_gather(refs, create, SETUP_CONCURRENCY)


async def populate(
    bench: Bench, sessions: Sequence[tuple[SessionName, Lease]], live: int, within: float
) -> Population:
    """Create *sessions* (name, lease) as a user would; wait until the operator holds *live*
    ready sessions and no Session or Event write has happened for a second."""

    async def create(item: tuple[SessionName, Lease]) -> None:
        ref, lease = item
        await bench.api.expect("POST", sessions_path(ref.namespace), session_body(ref, lease))

    return await _add(bench, sessions, create, live, within, seeded=False)


async def populate_seeded(
    bench: Bench, sessions: Sequence[tuple[SessionName, Lease]], live: int, within: float
) -> Population:
    """Seed *sessions* as :func:`adopted_body` says while the operator runs, and wait until
    it holds *live* ready sessions and is quiet. The operator may still initialise a
    session itself when it sees the create before the benchmark's status write (a lost
    race costs it a conflict, or an extra status write and Event): *calls* include them."""
    lifecycle = default_lifecycle()

    async def create(item: tuple[SessionName, Lease]) -> None:
        await create_initialised(bench.api, adopted_body(*item), lifecycle)

    return await _add(bench, sessions, create, live, within, seeded=True)


async def _add(
    bench: Bench,
    sessions: Sequence[tuple[SessionName, Lease]],
    create: Callable[[tuple[SessionName, Lease]], Awaitable[None]],
    live: int,
    within: float,
    *,
    seeded: bool,
) -> Population:
    total = len(sessions)
    verb = "seeding" if seeded else "creating"

    def created(done: int) -> None:
        bench.progress.update(0.5 * done / total, f"{verb} sessions {done:,}/{total:,}")

    before = await bench.api.request_counts()
    started = time.monotonic()
    async with bench.meter() as meter:
        await bounded_gather(sessions, create, SETUP_CONCURRENCY, created)
        create_seconds = time.monotonic() - started
        await wait_held(bench, live, started + within)
        ready_seconds = time.monotonic() - started
        await wait_quiet(bench, started + within)
    after = await bench.api.request_counts()
    return Population(
        live=live,
        created=total,
        create_seconds=create_seconds,
        ready_seconds=ready_seconds,
        calls=after.since(before),
        cost=meter.result,
        seeded=seeded,
    )


async def wait_held(bench: Bench, live: int, deadline: float) -> None:
    """Wait until the operator holds *live* sessions as ready (its ``xg2g_sessions``)."""
    while (ready := await bench.ready_sessions()) < live:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator holds only {ready:,} of {live:,} sessions ready")
        bench.progress.update(0.5 + 0.5 * ready / live, f"operator holds {ready:,}/{live:,}")
        await asyncio.sleep(0.5)


async def wait_quiet(bench: Bench, deadline: float, window: float = 1.0) -> None:
    """Wait until the apiserver has served no Session or Event write for *window* seconds."""
    previous = await bench.api.request_counts()
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        current = await bench.api.request_counts()
        if current.since(previous).writes == 0:
            return
        previous = current
    raise TimeoutError("Session and Event writes did not stop")
