"""The field tier's measurements, each over the running :class:`~bench.field.measure.Field`.

* :func:`pod_event_cost`: the replicas' CPU with unrelated Pods churning, against without;
* :func:`sustain`: N clients, each with its own token, beating their own Sessions (each with
  a Pod) at the interval the API names; a step is sustained with no wrongful expiry and a
  beat p99 at most twice the raw patch p99 at the same rate;
* :func:`noop_beats`: clients beating more often than their interval (no write is due);
* :func:`failover`: the leader killed while leases fall due and clients beat;
* :func:`restart`: both replicas restarted under the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.context import SETUP_CONCURRENCY, Bench, SessionName
from bench.field.clients import BeatStats
from bench.field.measure import Evidence, Field, Window, metered_window
from bench.field.profile import ReplicaProfiles, apiserver_profile, top_functions
from bench.field.replicas import FieldReplica
from bench.field.tenants import Tenant, account_of, mint_tenant_token, workload_session
from bench.load import Latency, bounded_gather
from bench.phases import ExpiryWatch, follow_sessions, staggered
from harness.kube import ApiCalls
from session_operator.k8s.rest import MERGE_PATCH
from session_operator.models import STATE_LABEL, sessions_path
from session_operator.timestamps import format_timestamp, parse_timestamp

P99_FACTOR = 2.0
"""A sustained step's beat p99 is at most this many times the raw patch p99 at its rate."""
HOLD_TIMEOUT_SECONDS = 300.0
HOLD_SECONDS_PER_SESSION = 0.01
"""How long the leader may take to hold Sessions just added: 300 s, plus 10 ms each."""
START_SECONDS_PER_SESSION = 0.05
"""How long it may take to initialise and start Sessions with a Pod each, added beside the
clients: 300 s, plus 50 ms each (about 22 a second were initialised on 2 cores beside 300
clients, each start being five writes or so)."""
FIRST_BEAT_TIMEOUT_SECONDS = 120.0
DUE_LEASE = {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}
"""Sessions whose leases the benchmark sets to fall due (never beaten)."""


# -- putting Sessions and clients in place ---------------------------------------------


async def create_sessions(
    scene: Field,
    refs: Sequence[SessionName],
    *,
    with_pod: bool = True,
    lease: dict[str, int] | None = None,
    created: Callable[[SessionName], None] | None = None,
    must_hold: bool = True,
    seconds_each: float = HOLD_SECONDS_PER_SESSION,
) -> None:
    """Create *refs* as users do (each with a Pod template unless *with_pod* is false), and
    call *created* with each as soon as it is; wait until the leader has initialised them
    all, for the hold timeout plus *seconds_each* per live Session. Unless *must_hold*, a
    leader that has not by then is no error (a step past capacity: its window tells)."""
    before = await live_sessions(scene)

    async def create(ref: SessionName) -> None:
        body = workload_session(ref, lease)
        if not with_pod:
            del body["spec"]["template"]
        await scene.api.expect("POST", sessions_path(ref.namespace), body)
        if created is not None:
            created(ref)

    def done(count: int) -> None:
        scene.progress.update(0.2 + 0.6 * count / len(refs), f"sessions {count:,}/{len(refs):,}")

    await bounded_gather(refs, create, SETUP_CONCURRENCY, done)
    await _wait_live(scene, before + len(refs), seconds_each, must_hold=must_hold)


async def add_tenants(
    scene: Field,
    namespaces: Sequence[str],
    accounts_per_namespace: int,
    first: int,
    count: int,
    *,
    with_pod: bool = True,
    lease: dict[str, int] | None = None,
    prefix: str = "s",
    ready: Callable[[Tenant], None] | None = None,
    must_hold: bool = True,
) -> list[Tenant]:
    """Sessions *first* … *first*+*count* (see :func:`create_sessions`), dealt round
    *namespaces*, and for each one's client a token of its own, minted first; in order of
    index. With *ready*, each tenant is handed to it as soon as its Session is created (a
    client started then, as users' clients start, is not outlived by its first lease
    however long the others take), and they are returned in that order. *must_hold* as
    for :func:`create_sessions`."""
    indexed = {
        SessionName(namespaces[index % len(namespaces)], f"{prefix}-{index:05d}"): index
        for index in range(first, first + count)
    }
    tenants: dict[SessionName, Tenant] = {}

    async def mint(ref: SessionName) -> None:
        account = account_of(indexed[ref], namespaces, accounts_per_namespace)
        token = await mint_tenant_token(scene.api, ref.namespace, account)
        tenants[ref] = Tenant(ref, account, token)

    def done(count_done: int) -> None:
        scene.progress.update(0.2 * count_done / count, f"tokens {count_done:,}/{count:,}")

    await bounded_gather(list(indexed), mint, SETUP_CONCURRENCY, done)
    if ready is None:
        await create_sessions(scene, list(indexed), with_pod=with_pod, lease=lease)
        return sorted(tenants.values(), key=lambda tenant: indexed[tenant.session])
    handed: list[Tenant] = []

    def created(ref: SessionName) -> None:
        handed.append(tenants[ref])
        ready(tenants[ref])

    await create_sessions(
        scene, list(indexed), with_pod=with_pod, lease=lease, created=created, must_hold=must_hold
    )
    return handed  # in the order handed to *ready*


async def start_sessions(
    scene: Field, groups: Sequence[tuple[Sequence[SessionName], dict[str, int]]]
) -> None:
    """Create each group's Sessions (its names, its lease) as users do, each with a Pod
    template, while the clients beat; wait until the leader has started them all (each Pod
    created, Pending: no node) and its work queue is empty, so no write of their start-up
    falls in a phase begun after."""
    count = sum(len(refs) for refs, _ in groups)
    before = (await _leader_metric(scene, "xg2g_sessions", "state")).get("starting", 0.0)
    for refs, lease in groups:
        await create_sessions(scene, refs, lease=lease, seconds_each=START_SECONDS_PER_SESSION)
    deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS + START_SECONDS_PER_SESSION * count
    while True:
        starting = (await _leader_metric(scene, "xg2g_sessions", "state")).get("starting", 0.0)
        waiting = (await _leader_metric(scene, "xg2g_workqueue_depth", "name")).get("sessions")
        if starting - before >= count and not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the leader started {starting - before:,.0f} of {count:,}")
        scene.progress.update(0.8 + 0.2 * (starting - before) / count, "Pods created")
        await asyncio.sleep(0.5)


async def _leader_metric(scene: Field, name: str, label: str) -> dict[str, float]:
    leader = await scene.replicas.wait_leader(scene.api)
    return await scene.replicas.named(leader).metric(scene.http, name, label)


async def live_sessions(scene: Field) -> int:
    """Sessions the leader holds in a live state."""
    states = await _leader_metric(scene, "xg2g_sessions", "state")
    return int(sum(states.get(state, 0) for state in ("new", "starting", "ready")))


async def drop_sessions(scene: Field, tenants: Sequence[Tenant]) -> None:
    """Delete the Sessions of *tenants* whose clients stopped (their leases would lapse
    during what follows), and wait until the leader no longer holds them live."""
    if not tenants:
        return  # the leader may still be initialising others: its live count only grows
    before = await live_sessions(scene)

    async def delete(tenant: Tenant) -> None:
        path = f"{sessions_path(tenant.session.namespace)}/{tenant.session.name}"
        await scene.api.expect("DELETE", path)

    await bounded_gather(list(tenants), delete, SETUP_CONCURRENCY)
    deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS
    while await live_sessions(scene) > before - len(tenants):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(tenants):,} deleted Sessions still held live")
        await asyncio.sleep(0.5)


async def wait_started(scene: Field, namespace: str, count: int) -> None:
    """Wait until *count* Sessions of *namespace* are ``starting``: each Pod created and the
    state label written, so no write of their start-up falls in a window opened after."""
    selector = f"{STATE_LABEL}=starting"
    deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS + HOLD_SECONDS_PER_SESSION * count
    while True:
        listing = await scene.api.expect(
            "GET", sessions_path(namespace), params={"labelSelector": selector}
        )
        started = len(listing.get("items") or ())
        if started >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{started:,} of {count:,} Sessions in {namespace} started")
        await asyncio.sleep(0.5)


async def _wait_live(
    scene: Field, live: int, seconds_each: float, *, must_hold: bool = True
) -> None:
    deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS + seconds_each * live
    while (held := await live_sessions(scene)) < live:
        if time.monotonic() > deadline:
            shortfall = f"the leader holds {held:,} of {live:,} live sessions"
            if must_hold:
                raise TimeoutError(shortfall)
            scene.progress.note(f"{shortfall}; going on")
            return
        scene.progress.update(0.4 + 0.4 * held / live, f"leader holds {held:,}/{live:,}")
        await asyncio.sleep(0.5)


# -- unrelated Pod events ---------------------------------------------------------------


@dataclass
class PodEventCost:
    """The replicas' CPU without and with unrelated Pods churning (no heartbeats)."""

    quiet: Window
    churning: Window
    events: int

    @property
    def events_per_second(self) -> float:
        """Unrelated Pod events per second while churning."""
        return self.churning.per_second(self.events)

    def core_percent_per_100(self, replica: str) -> float:
        """*replica*'s extra CPU, % of a core, per 100 unrelated Pod events per second."""
        quiet, busy = self.quiet.cost.get(replica), self.churning.cost.get(replica)
        if quiet is None or busy is None or not self.events_per_second:
            return math.nan
        extra = busy.core_share - quiet.core_share
        return 100 * extra * 100 / self.events_per_second


async def pod_event_cost(scene: Field, seconds: float, events_per_second: float) -> PodEventCost:
    """Meter *seconds* with nothing happening, then *seconds* of unrelated Pod churn."""
    quiet = await metered_window(scene, seconds, "no Pod events")
    before = scene.churn.events
    stop = asyncio.Event()

    async def churn() -> None:
        try:
            await scene.churn.run(events_per_second, stop)
        finally:
            stop.set()

    churning = await metered_window(scene, seconds, "unrelated Pod churn", churn)
    return PodEventCost(quiet, churning, scene.churn.events - before)


# -- sustained beats --------------------------------------------------------------------


@dataclass
class SustainStep:
    """N clients beating N Sessions over one window."""

    sessions: int
    window: Window
    raw_p99_ms: float
    wrongful: int
    churn_events_per_second: float
    apiserver_profile: str = ""
    """The apiserver's top functions in the window's middle (with ``--profile``)."""
    replica_profiles: dict[str, str] = field(default_factory=dict)
    """Each replica's busiest functions over the same part of the window (``--profile``)."""
    unheld: int = 0
    """Sessions the leader did not hold live as the window began: not yet initialised (past
    capacity), or stopped."""
    evidence: Evidence = field(default_factory=Evidence)
    """The tenant Sessions stopped and the outage record at the window's end."""

    @property
    def beats(self) -> BeatStats:
        """What the clients saw."""
        return self.window.beats

    @property
    def calls_per_beat(self) -> float:
        """apiserver calls (Sessions, Events, reviews; not Pods, not watches) per beat
        answered 200."""
        answered = self.beats.beats
        return self.window.calls.calls / answered if answered else math.nan

    @property
    def sustained(self) -> bool:
        """Every Session held live, no wrongful expiry, and the beats' p99 within
        :data:`P99_FACTOR` of raw."""
        within = self.beats.latency.p99_ms <= P99_FACTOR * self.raw_p99_ms
        return self.unheld == 0 and self.wrongful == 0 and within


async def sustain(
    scene: Field,
    tenants: Sequence[Tenant],
    tenant_namespaces: Sequence[str],
    seconds: float,
    warm_up: float,
    raw_p99_ms: float,
    churn_rate: float,
    live_target: int,
    profile_to: Path | None = None,
) -> SustainStep:
    """Start clients for the *tenants* not yet beaten (the fleet already beats the others),
    let them settle for *warm_up*, count how many short of *live_target* the leader holds
    live, then meter *seconds* with unrelated Pods churning. With *profile_to* (a path
    prefix), the apiserver's CPU and both replicas' Python are profiled for a quarter of it,
    from a third in (``<prefix>-apiserver-<N>.pprof``, ``<prefix>-<replica>-<N>.txt``)."""
    scene.fleet.start(tenants[scene.fleet.running :], spread=5.0)
    settle_until = time.monotonic() + warm_up
    while (left := settle_until - time.monotonic()) > 0:
        scene.progress.update(1 - left / warm_up, f"{len(tenants):,} clients settling")
        await asyncio.sleep(min(1.0, left))
    unheld = max(0, live_target - await live_sessions(scene))
    stop = asyncio.Event()
    events_before = scene.churn.events
    profiled: list[Path] = []
    replicas_top: dict[str, str] = {}

    async def profile(prefix: Path) -> None:
        await asyncio.sleep(seconds / 3)
        replicas = ReplicaProfiles(prefix, str(len(tenants)))
        for replica in scene.replicas:
            await replicas.start(replica.name, replica.process.pid)
        out = Path(f"{prefix}-apiserver-{len(tenants)}.pprof")
        if await apiserver_profile(scene.api, max(1, round(seconds / 4)), out):
            profiled.append(out)
        replicas_top.update(await replicas.stop())

    async def beside() -> None:
        work = [scene.churn.run(churn_rate, stop)]
        if profile_to is not None:
            work.append(profile(profile_to))
        await asyncio.gather(*work)

    window = await metered_window(scene, seconds, f"{len(tenants):,} clients", beside)
    events = scene.churn.events - events_before
    evidence = await scene.stopped_sessions(tenant_namespaces)
    wrongful = len(window.beats.ended) + evidence.stopped
    top = "".join([await top_functions(out) for out in profiled])
    per_second = window.per_second(events)
    return SustainStep(
        len(tenants), window, raw_p99_ms, wrongful, per_second, top, replicas_top, unheld,
        evidence,
    )  # fmt: skip


# -- beats inside the interval --------------------------------------------------------------


async def noop_beats(scene: Field, tenants: Sequence[Tenant], seconds: float) -> Window:
    """Clients of *tenants* (Sessions with a long interval) beat every 5 s: every beat but
    each one's first is inside the interval. Metered after one round of first beats."""
    start = scene.fleet.running
    scene.fleet.start(tenants, spread=5.0, beat_every=5.0)
    await asyncio.sleep(8.0)
    window = await metered_window(scene, seconds, f"{len(tenants):,} clients inside the interval")
    await scene.fleet.close(keep=start)
    return window


# -- failover ---------------------------------------------------------------------------


@dataclass
class Failover:
    """The leader killed under load."""

    sessions: int
    killed: str
    takeover_seconds: float
    lag_during: list[float]
    """Expiry lags (s) of leases that fell due before the new leader took over."""
    lag_by_due: list[tuple[float, float]]
    """Each lease due after the takeover: (seconds from the takeover to its deadline, its
    lag in seconds), earliest first; where in the takeover's wake the lag lies."""
    operator_lag_after: list[float]
    """The same leases' lags as their ``stoppedAt`` tells (the new leader's own time, before
    the watch brought the stop here)."""
    graced: int
    """Due leases the operator moved on instead of stopping (an outage's grace, lease rule
    8): their lag holds the grace."""
    due: int
    observed: int
    wrongful: int
    beats: BeatStats
    calls: ApiCalls = field(default_factory=lambda: ApiCalls(0, 0, 0, 0, 0, 0))
    outage_seconds: float = 0.0
    """Seconds of the phase the outage record covers: leases that lapse in an outage are
    kept while their client may be owed a grace (lease rule 8), so an apiserver past its
    capacity all along leaves none stopped."""
    evidence: Evidence = field(default_factory=Evidence)
    """The tenant Sessions stopped and the outage record at the phase's end."""
    replica_profiles: dict[str, str] = field(default_factory=dict)
    """The standby's busiest functions from before the kill until every due lease was seen
    stopped (with ``--profile``)."""

    @property
    def lag_after(self) -> list[float]:
        """Expiry lags (s) of leases that fell due after the takeover."""
        return [lag for _, lag in self.lag_by_due]

    @property
    def after_p99_ms(self) -> float:
        """p99 lag of leases due after the takeover."""
        return Latency.of(self.lag_after).p99_ms

    def met(self, takeover_seconds: float, lag_after_ms: float) -> bool:
        """A new leader within *takeover_seconds*, 0 wrongful, and every due lease seen
        stopped with a lag p99 after the takeover within *lag_after_ms*. A due lease not
        seen stopped (an outage kept it, lease rule 8) measured no lag: not met."""
        lag_met = not self.lag_after or self.after_p99_ms <= lag_after_ms
        return (
            self.takeover_seconds <= takeover_seconds
            and self.wrongful == 0
            and self.observed == self.due
            and lag_met
        )

    @property
    def during_p99_ms(self) -> float:
        """p99 lag of leases due before the takeover ended."""
        return Latency.of(self.lag_during).p99_ms


async def failover(
    scene: Field,
    bench: Bench,
    sessions: int,
    due_namespace: str,
    due: Sequence[str],
    tenant_namespaces: Sequence[str],
    spread: float,
    profile_to: Path | None = None,
) -> Failover:
    """Set the *due* Sessions' leases to fall due over *spread* seconds from 5 s before the
    kill, kill the leader (SIGKILL: no Lease release), and watch the standby take over and
    stop them while the clients go on beating. The killed replica is started again after,
    as its Deployment would. With *profile_to*, py-spy samples the standby from before
    the kill until every due lease is seen stopped."""
    leader = await scene.replicas.wait_leader(scene.api)
    kill_at = time.time() + 8.0
    deadlines = staggered(due, datetime.fromtimestamp(kill_at - 5.0, UTC), spread)
    seen = ExpiryWatch(deadlines, {name: format_timestamp(at) for name, at in deadlines.items()})
    version = await scene.api.resource_version(due_namespace)
    watcher = asyncio.create_task(follow_sessions(bench, due_namespace, version, seen))

    async def patch(name: str) -> None:
        body = {"status": {"leaseExpiresAt": seen.written[name]}}
        path = sessions_path(due_namespace, name, "status")
        await scene.api.expect("PATCH", path, body, MERGE_PATCH)

    await bounded_gather(list(deadlines), patch, SETUP_CONCURRENCY)
    ended_before = set(scene.fleet.stats.ended)
    before = await scene.api.request_counts()
    scene.fleet.window()
    profiles = ReplicaProfiles(profile_to, "failover") if profile_to is not None else None
    if profiles is not None:
        for standby in scene.replicas:
            if standby.name != leader:
                await profiles.start(standby.name, standby.process.pid)
    await asyncio.sleep(max(0.0, kill_at - time.time()))
    killed = time.time()
    scene.replicas.named(leader).process.kill()
    while True:
        new = await scene.replicas.leader(scene.api)
        if new is not None and new != leader:
            break
        await asyncio.sleep(0.05)
    took_over = time.time()
    last = max(deadlines.values()).timestamp()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(seen.all_stopped.wait(), max(0.0, last - time.time()) + 30.0)
    profiled = await profiles.stop() if profiles is not None else {}
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    beats = scene.fleet.window()
    after = await scene.api.request_counts()
    scene.replicas.named(leader).process.spawn()
    await scene.replicas.named(leader).wait_ready(scene.http)
    during: list[float] = []
    operator_later: list[float] = []
    by_due: list[tuple[float, float]] = []
    for name, (when, status) in seen.stopped.items():
        deadline = deadlines[name].timestamp()
        if deadline < took_over:
            during.append(when - deadline)
            continue
        by_due.append((deadline - took_over, when - deadline))
        if status.get("stoppedAt"):
            operator_later.append(parse_timestamp(status["stoppedAt"]).timestamp() - deadline)
    evidence = await scene.stopped_sessions(tenant_namespaces)
    wrongful = len(beats.ended - ended_before) + evidence.stopped
    outage = evidence.outage_seconds(kill_at - 5.0, time.time())
    return Failover(
        sessions=sessions,
        killed=leader,
        takeover_seconds=took_over - killed,
        lag_during=during,
        lag_by_due=sorted(by_due),
        operator_lag_after=operator_later,
        graced=len(seen.graced),
        due=len(deadlines),
        observed=len(seen.stopped),
        wrongful=wrongful,
        beats=beats,
        calls=after.since(before),
        outage_seconds=outage,
        evidence=evidence,
        replica_profiles=profiled,
    )


# -- restart ----------------------------------------------------------------------------


@dataclass
class Restart:
    """Both replicas restarted under the clients."""

    sessions: int
    ready_seconds: dict[str, float]
    first_beat_seconds: float
    cold: Window
    """The window from the start until *cold_seconds* after the first heartbeat answered:
    the start-up's peak memory and the auth caches' cold cost."""
    wrongful: int = 0
    """Sessions stopped under their beating clients (must be 0)."""
    replica_profiles: dict[str, str] = field(default_factory=dict)
    """Each replica's busiest functions from its start to ready (with ``--profile``)."""
    outage_seconds: float = 0.0
    """Seconds from the stop to the window's end that the outage record covers."""
    evidence: Evidence = field(default_factory=Evidence)
    """The tenant Sessions stopped and the outage record at the window's end."""


async def restart(
    scene: Field,
    sessions: int,
    cold_seconds: float,
    tenant_namespaces: Sequence[str],
    profile_to: Path | None = None,
) -> Restart:
    """Stop both replicas (SIGTERM), start both, and time them to ready (the store synced)
    and to the first heartbeat answered; meter the window from the start until
    *cold_seconds* after that first answer, the start-up listing's peak memory and the
    auth caches' cold cost included. With *profile_to*, py-spy samples each replica from its
    start until both are ready and the window has ended."""
    stopped_at = time.time()
    scene.replicas.stop()
    profiles = ReplicaProfiles(profile_to, "restart") if profile_to is not None else None
    started = time.monotonic()
    for replica in scene.replicas:
        replica.process.spawn()
        if profiles is not None:
            await profiles.start(replica.name, replica.process.pid)
    ready: dict[str, float] = {}

    async def wait_ready(replica: FieldReplica) -> None:
        ready[replica.name] = await replica.wait_ready(scene.http, since=started)

    async def observe() -> float:
        await asyncio.gather(*(wait_ready(replica) for replica in scene.replicas))
        while (answered := scene.fleet.stats.first_answered) is None:
            if time.monotonic() - started > FIRST_BEAT_TIMEOUT_SECONDS:
                readiness = ", ".join(f"{name} {at:.1f} s" for name, at in sorted(ready.items()))
                raise TimeoutError(
                    f"no heartbeat answered in {FIRST_BEAT_TIMEOUT_SECONDS:.0f}s"
                    f" (ready after the start: {readiness})"
                )
            await asyncio.sleep(0.05)
        return answered - started

    observing = asyncio.create_task(observe())
    cold = await metered_window(scene, cold_seconds, "restarted: cold caches", until=observing)
    first_beat = await observing
    profiled = await profiles.stop() if profiles is not None else {}
    evidence = await scene.stopped_sessions(tenant_namespaces)
    wrongful = len(cold.beats.ended) + evidence.stopped
    outage = evidence.outage_seconds(stopped_at, time.time())
    return Restart(sessions, ready, first_beat, cold, wrongful, profiled, outage, evidence)
