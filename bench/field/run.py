"""``make bench BENCH_ARGS=--field``: the field tier, on a local control plane of its own.

In order: tenants (namespaces, ServiceAccounts, RBAC); the raw ceiling and raw patches at
each step's rate, before any operator runs; two replicas over TLS; unrelated Pods, and what
their events cost the replicas; beats inside the interval; expiries of Sessions with Pods;
the sustain steps (clients with their own tokens, each Session with a Pod, Pods churning),
up to the first step not sustained; then, at ``failover_sessions`` live Sessions, the
leader killed, and both replicas restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.access import create_namespaces
from bench.context import IDLER_LEASE, SETUP_CONCURRENCY, Bench, SessionName
from bench.field.churn import PodChurn
from bench.field.clients import Endpoints, Fleet
from bench.field.cpus import CONTROL_PLANE, pin_apart
from bench.field.measure import Field, open_loop
from bench.field.phases import (
    DUE_LEASE,
    add_tenants,
    create_sessions,
    drop_sessions,
    failover,
    live_sessions,
    noop_beats,
    pod_event_cost,
    restart,
    start_sessions,
    sustain,
    wait_started,
)
from bench.field.plan import FieldPlan, beat_rate
from bench.field.replicas import REPLICA_NAMES, START_TIMEOUT, FieldReplica, ReplicaSet
from bench.field.report import FieldResults
from bench.field.tenants import Tenant, grant_heartbeats, tenant_namespaces, workload_session
from bench.load import Rotation, bounded_gather, closed_loop
from bench.phases import Expiry, StatusWriter, expiry, staggered
from bench.population import create_initialised, default_lifecycle
from harness import LocalControlPlane
from harness.certificates import self_signed_certificate
from harness.kube import ApiServer
from harness.machine import describe_machine
from harness.progress import Progress
from session_operator.models import sessions_path

RAW_NAMESPACE = "field-raw"
NOOP_NAMESPACE = "field-noop"
EXPIRY_NAMESPACE = "field-expiry"
DUE_NAMESPACE = "field-due"
IDLE_NAMESPACE = "field-idle"
NOOP_LEASE = {"ttlSeconds": 10800, "heartbeatIntervalSeconds": 3600}
CEILING_CONCURRENCY = 32


async def measure_field(
    plan: FieldPlan,
    plane: LocalControlPlane,
    workdir: Path,
    progress: Progress,
    profile_to: Path | None = None,
    *,
    pinned: bool = False,
) -> FieldResults:
    """Run every field phase against *plane*; the replicas start and stop here. With
    *profile_to* (a path prefix), each sustain step's apiserver profile and the replicas'
    Python stacks over the same span are kept there, and the replicas' from their restart
    to ready. If *pinned*, the control plane runs on CPUs of its own
    (:mod:`bench.field.cpus`)."""
    cert_file, key_file = self_signed_certificate(workdir)
    tls = ssl.create_default_context(cafile=str(cert_file))
    async with (
        ApiServer(plane.server, plane.admin_token, plane.ca_file, connections=256) as api,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as http,
    ):
        kubernetes = (await api.expect("GET", "/version"))["gitVersion"]
        results = FieldResults(
            machine=describe_machine(str(kubernetes), "see the default tier"),
            mode=plan.mode,
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            accounts=plan.namespaces * plan.accounts_per_namespace,
            namespaces=plan.namespaces,
            churn_pods=plan.churn_pods,
        )
        if pinned:
            pids = [plane.component(name).pid for name in CONTROL_PLANE]
            results.cpus = pin_apart(pids)
        replicas = ReplicaSet([
            FieldReplica(name, plane.kubeconfig, workdir, (cert_file, key_file), tls, {})
            for name in REPLICA_NAMES
        ])  # fmt: skip
        endpoints = Endpoints([replica.endpoint for replica in replicas])
        scene = Field(
            api=api,
            http=http,
            replicas=replicas,
            fleet=Fleet(endpoints, tls),
            churn=PodChurn(api, plan.churn_pods),
            plane_pids={
                "kube-apiserver": plane.component("kube-apiserver").pid,
                "etcd": plane.component("etcd").pid,
                "bench": os.getpid(),
            },
            progress=progress,
        )
        probing = asyncio.create_task(endpoints.follow(http))
        try:
            await _phases(plan, scene, results, profile_to)
        except Exception as error:  # report what was measured before the failure
            results.error = f"{type(error).__name__}: {error}"
            progress.note(f"aborted: {results.error}")
        finally:
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
            await scene.fleet.close()
            replicas.stop()
        return results


async def _phases(
    plan: FieldPlan, scene: Field, results: FieldResults, profile_to: Path | None
) -> None:
    progress, api = scene.progress, scene.api
    namespaces = tenant_namespaces(plan.namespaces)
    progress.start("tenants", f"{results.accounts} ServiceAccounts in {plan.namespaces} namespaces")
    await create_namespaces(
        api, [*namespaces, RAW_NAMESPACE, NOOP_NAMESPACE, EXPIRY_NAMESPACE, DUE_NAMESPACE,
              IDLE_NAMESPACE]
    )  # fmt: skip
    await grant_heartbeats(api, [*namespaces, NOOP_NAMESPACE], plan.accounts_per_namespace)

    progress.start("churn", f"{plan.churn_pods:,} unrelated Pods")
    await scene.churn.fill()
    progress.start("raw", "the raw ceiling and raw patches at each step's rate")
    await _raw(plan, scene, results)

    progress.start("replicas", "two replicas over TLS")
    await scene.replicas.start(scene.http)
    await scene.replicas.wait_leader(api)
    bench = await _bench(scene)

    progress.start("pod events", "the replicas' CPU on unrelated Pod events")
    results.pod_events = await pod_event_cost(scene, plan.pod_cost_seconds, plan.pod_cost_rate)

    progress.start("noop", f"{plan.noop_sessions:,} clients beating inside their interval")
    noop = await add_tenants(
        scene, [NOOP_NAMESPACE], plan.accounts_per_namespace, 0, plan.noop_sessions,
        with_pod=False, lease=NOOP_LEASE, prefix="n",
    )  # fmt: skip
    results.noop_sessions = len(noop)
    results.noop = await noop_beats(scene, noop, plan.window)

    progress.start("expiry", f"{plan.expiry_sessions:,} leases of Sessions with a Pod end")
    results.expiry = await _expiry_with_pods(plan, scene, bench)

    progress.start("sustain", "clients with their own tokens, Sessions with Pods")
    tenants: list[Tenant] = []

    def beat(tenant: Tenant) -> None:
        scene.fleet.start([tenant], spread=5.0)

    for size in plan.steps(results.goal_sessions):
        live_target = await live_sessions(scene) + size - len(tenants)
        grown = await add_tenants(scene, namespaces, plan.accounts_per_namespace, len(tenants),
                                  size - len(tenants), ready=beat, must_hold=False)  # fmt: skip
        tenants += grown
        raw_p99 = results.raw_at_rate[size].latency.p99_ms
        step = await sustain(scene, tenants, namespaces, plan.window, plan.warm_up, raw_p99,
                             plan.churn_rate, live_target, profile_to)  # fmt: skip
        results.steps.append(step)
        progress.note(
            f"{size:,} sessions: {'sustained' if step.sustained else 'not sustained'}, "
            f"p99 {step.beats.latency.p99_ms:.0f} ms, {step.wrongful} wrongful"
        )
        if not step.sustained:
            break
    # The failover and the restart run under the clients of the largest step sustained
    # (of the first step, if none was).
    best = results.sustained or (results.steps[0] if results.steps else None)
    kept = best.sessions if best else 0
    await scene.fleet.close(keep=kept)
    await drop_sessions(scene, tenants[kept:])

    progress.start("populate", f"{plan.failover_sessions:,} live sessions")
    live = await _fill_to(plan, scene)
    due = due_names(plan)
    progress.start("failover", "the leader killed while leases fall due")
    results.failover = await failover(scene, bench, live, DUE_NAMESPACE, due, namespaces,
                                      plan.due_spread, profile_to)  # fmt: skip
    progress.start("restart", "both replicas restarted")
    results.restart = await restart(scene, live - plan.due_sessions, plan.cold_seconds, namespaces,
                                    profile_to)  # fmt: skip


async def _raw(plan: FieldPlan, scene: Field, results: FieldResults) -> None:
    """The closed-loop ceiling, then open-loop patches at each step's rate (none of the
    steps' sizes is known before the ceiling), both with the unrelated Pods churning as
    they will beside the steps' heartbeats; all to Sessions shaped as the tenants'."""
    api = scene.api
    raw = [SessionName(RAW_NAMESPACE, f"raw-{index:05d}") for index in range(plan.raw_sessions)]
    await seed_like_tenants(api, raw)
    writer = StatusWriter(api)
    stop = asyncio.Event()
    churning = asyncio.create_task(scene.churn.run(plan.churn_rate, stop))
    try:
        results.ceiling = await closed_loop(
            Rotation(raw), writer.merge, CEILING_CONCURRENCY, plan.ceiling_seconds
        )
        for size in plan.steps(results.goal_sessions):
            rate = beat_rate(size)
            before = await api.request_counts()
            run = await open_loop(raw, writer.merge, rate, plan.window)
            served = (await api.request_counts()).status_patch_p99_ms(before)
            results.raw_at_rate[size] = replace(run, apiserver_p99_ms=served)
    finally:
        stop.set()
        await churning
    # The replicas watch every namespace: the raw Sessions go before they start.
    await api.expect("DELETE", sessions_path(RAW_NAMESPACE))


async def seed_like_tenants(api: ApiServer, refs: list[SessionName]) -> None:
    """Sessions shaped as the tenants' (a Pod template, the default lease), initialised as
    the operator would: the raw patches then write objects of the size the beats write."""
    lifecycle = default_lifecycle()

    async def create(ref: SessionName) -> None:
        await create_initialised(api, workload_session(ref), lifecycle, state="new")

    await bounded_gather(refs, create, SETUP_CONCURRENCY)


def due_names(plan: FieldPlan) -> list[str]:
    """The Sessions whose leases fall due around the failover."""
    return [f"due-{index:04d}" for index in range(plan.due_sessions)]


async def _bench(scene: Field) -> Bench:
    """A :class:`Bench` over the leader (and the other replica as its standby), for the
    default tier's expiry and seeding measurements."""
    leader = scene.replicas.named(await scene.replicas.wait_leader(scene.api))
    other = next(replica for replica in scene.replicas if replica is not leader)
    return Bench(scene.api, scene.http, leader.process, scene.plane_pids, "", scene.progress,
                 standby=other.process)  # fmt: skip


async def _expiry_with_pods(plan: FieldPlan, scene: Field, bench: Bench) -> Expiry:
    """Sessions with a Pod, whose leases are set to end over the expiry window."""
    refs = [SessionName(EXPIRY_NAMESPACE, f"x-{i:04d}") for i in range(plan.expiry_sessions)]
    await create_sessions(scene, refs)
    await wait_started(scene, EXPIRY_NAMESPACE, len(refs))
    start = datetime.fromtimestamp(time.time() + 3.0, UTC)
    deadlines = staggered([ref.name for ref in refs], start, plan.expiry_window)
    return await expiry(bench, "staggered", plan.expiry_sessions, EXPIRY_NAMESPACE, deadlines, 30.0)


async def _fill_to(plan: FieldPlan, scene: Field) -> int:
    """Add the due Sessions and idle ones (leases of hours), each with a Pod template and
    started by the leader as users' are, until the replicas hold ``failover_sessions``
    live; the number held."""
    held = await live_sessions(scene)
    due = [SessionName(DUE_NAMESPACE, name) for name in due_names(plan)]
    idle_count = max(0, plan.failover_sessions - held - len(due))
    idle = [SessionName(IDLE_NAMESPACE, f"idle-{i:05d}") for i in range(idle_count)]
    await start_sessions(scene, [(due, DUE_LEASE), (idle, IDLER_LEASE)])
    return held + len(due) + len(idle)


def field_notes(plan: FieldPlan) -> list[str]:
    """What the field table's figures mean."""
    return [
        f"Clients: one per Session, each with its own token (TokenRequest, audience "
        f"session-lease-operator), dealt over {plan.namespaces * plan.accounts_per_namespace} "
        f"ServiceAccounts in {plan.namespaces} namespaces; each holds one keep-alive TLS "
        "connection from its own 127.x.y.z address, to the replica a Service-like chooser gave "
        "it (round robin over the replicas whose /readyz passes). All run in this one Python "
        "process, beside both replicas.",
        "Beats are open loop: each client beats, then waits the interval the API names plus up "
        "to a tenth (the client library's jitter), so every beat of a sustain step must write.",
        "Sustain steps: Sessions at the defaults (60 s / 5 s), each with a Pod template (its Pod "
        f"stays Pending: no node; the replicas' startTimeout is {START_TIMEOUT} so that is no "
        "failure); metered over one window after a settling time, with "
        f"{plan.churn_pods:,} unrelated Pods replaced at {plan.churn_rate:.0f} Pod events/s. "
        "Sustained = no wrongful expiry (a 404/410 to a client, or a tenant Session stopping) "
        "and beat p99 ≤ 2x the p99 of raw status patches sent open loop at the step's rate "
        f"for as long as a window ({plan.window:.0f} s; Poisson arrivals, as many clients' "
        "timers make), with the Pods churning as beside the beats, before the replicas "
        "started. 'As the apiserver timed it' is the p99 of "
        "apiserver_request_duration_seconds for the same status patches.",
        f"Windows last {plan.window:.0f} s. With authCacheTTL at its 3 min, a verdict is "
        "renewed in the background after 154-162 s, so a window that long renews each token's "
        "about once: its reviews per beat are the steady state's. apiserver columns are "
        "deltas of apiserver_request_total; calls/beat count Session and Event calls and "
        "reviews, not Pods or watches.",
        "CPU is % of one core per process; peak = VmHWM of the window (reset at its start). "
        "CPU per beat is each replica's CPU over the window per heartbeat it answered.",
        "Failover: the leader SIGKILLed (no Lease release) while its clients move to the other "
        "replica; leases due from 5 s before the kill, set by status patch, never beaten. "
        "Restart: both replicas SIGTERMed and started again under the running clients, metered "
        f"from their start until {plan.cold_seconds:.0f} s after the first beat answered (the "
        "start-up listing's peak memory and the cold auth caches). Every live Session of both, "
        "the due ones included, has a Pod template and the Pod the leader made for it.",
    ]
