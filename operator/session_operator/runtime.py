"""Assemble and run the operator: kopf, the informer, the control loop, and the HTTP
server, one loop; or the informer and the heartbeat API alone (``serve-api``).

Every apiserver client (``k8s.rest.Rest``) of the process is built here, once
(:func:`api_calls`), each with the deadline per call that its callers can afford.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from session_operator import heap, metrics
from session_operator.api.admission import AdmissionRoutes
from session_operator.api.server import start_server
from session_operator.api.wiring import build_heartbeat_api
from session_operator.call_health import CallHealth
from session_operator.config import Settings
from session_operator.controller.election import LeaderElector, replica_identity
from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Kubernetes, Reconciler
from session_operator.handlers.login import register_login
from session_operator.informer.pod_cache import PodCache
from session_operator.informer.pod_store import PodStore
from session_operator.informer.session_cache import SessionCache
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.connection import connect
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.leader_lease import LeaseApi
from session_operator.k8s.outage_record import OutageMonitor, OutageRecordApi
from session_operator.k8s.owned import OwnedObjects
from session_operator.k8s.pods import PodApi
from session_operator.k8s.rest import Rest
from session_operator.k8s.session_policies import SessionPolicyApi
from session_operator.k8s.sessions import SessionApi
from session_operator.lifecycle import LifecycleSettings

SESSION_LIST_TIMEOUT_SECONDS = 60.0
"""How long one page of the informer's Session LIST may take (its WATCH has limits of its
own, ``k8s/watch.py``)."""
HEARTBEAT_CALL_TIMEOUT_SECONDS = 2.0
"""The heartbeat API answers 503 when an apiserver call on its request path has not been
answered after this long, so that a stalled apiserver is answered in a few seconds rather
than with a hung request."""
HEARTBEAT_LATE_CALL_LIMIT_SECONDS = 10.0
"""Such a call runs on, to keep its connection and let its write count, until this long;
then it is cancelled."""
OUTAGE_RECORD_TIMEOUT_SECONDS = HEARTBEAT_CALL_TIMEOUT_SECONDS
"""The outage record's calls give up as soon as the heartbeat API's do."""
CONTROLLER_CALL_TIMEOUT_SECONDS = 30.0
"""No call of the controller waits for ever: a hung one is retried as an unreachable
apiserver's (the leader's Lease calls have tighter deadlines of their own)."""

LEADER_LEASE_NAME = "session-lease-operator"

# kopf's LogFormat.FULL, with the logger's name whole.
TEXT_LOG_FORMAT = "[%(asctime)s] %(name)s [%(levelname)-8s] %(message)s"

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock, in UTC (the one clock the operator reads)."""
    return datetime.now(UTC)


def configure_logging(settings: Settings) -> None:
    """Structured (JSON) or plain logs at the configured level: at INFO, one line per
    lifecycle step of a Session, per leadership change and per outage; nothing per
    heartbeat. kopf's and aiohttp's own lines only at DEBUG (and their warnings)."""
    verbose = settings.log_level == "DEBUG"
    if settings.log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, verbose=verbose)
    else:
        # kopf takes a format string where its hint says LogFormat (make_formatter's `str`
        # case); its LogFormat.FULL would cut logger names to 20 characters.
        kopf.configure(log_format=TEXT_LOG_FORMAT, verbose=verbose)  # type: ignore[arg-type]
    logging.getLogger().setLevel(settings.log_level)
    quiet = settings.log_level if settings.log_level == "DEBUG" else "WARNING"
    for name in ("kopf", "aiohttp.access", "aiohttp.server"):
        logging.getLogger(name).setLevel(quiet)


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's behaviour: it watches nothing, posts no Events of its own, observes no CRDs
    or Namespaces, and stops promptly."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    # It has no resource to discover: it need not list and watch CustomResourceDefinitions
    # and Namespaces.
    settings.scanning.disabled = True
    # Stop promptly on SIGTERM: a lease decision in flight is a compare-and-set write,
    # safe to abandon; the next leader (or restart) decides again.
    settings.queueing.exit_timeout = 0.5
    settings.queueing.idle_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    settings.networking.request_timeout = 30
    return settings


@dataclass(frozen=True)
class ApiCalls:
    """The apiserver clients of a process, over one connection, one per deadline. All but
    the informer's tell the outage monitor of each call."""

    informer: Rest
    heartbeat_api: Rest
    outage_record: Rest
    controller: Rest


def api_calls(api_client: ApiClient, outages: OutageMonitor) -> ApiCalls:
    """Every :class:`Rest` of the process over *api_client*, with its deadline per call."""
    health = outages.health
    return ApiCalls(
        informer=Rest(api_client, timeout=SESSION_LIST_TIMEOUT_SECONDS),
        heartbeat_api=Rest(
            api_client,
            timeout=HEARTBEAT_LATE_CALL_LIMIT_SECONDS,
            answer_within=HEARTBEAT_CALL_TIMEOUT_SECONDS,
            observer=health,
        ),
        outage_record=Rest(api_client, timeout=OUTAGE_RECORD_TIMEOUT_SECONDS, observer=health),
        controller=Rest(api_client, timeout=CONTROLLER_CALL_TIMEOUT_SECONDS, observer=health),
    )


async def share_outages(
    rest: Rest, outages: OutageMonitor, settings: Settings, serving: Callable[[], bool]
) -> None:
    """Share *outages* through the record in the leader-election namespace, until
    cancelled; *serving* tells whether this replica is ready."""
    await outages.run(OutageRecordApi(rest, settings.leader_election_namespace), serving)


def build_controller(
    rest: Rest,
    settings: Settings,
    leading: asyncio.Event,
    outages: OutageMonitor,
    events: EventRecorder,
) -> SessionController:
    """The control loop with its stores, reconciler and apiserver calls; it takes steps
    only while *leading* is set, gives a grace for the *outages*, and tells of its steps
    in *events* (posted by their own task)."""
    kube = Kubernetes(
        SessionApi(rest),
        PodApi(rest),
        OwnedObjects(rest, settings.released_kinds),
        events,
        SessionPolicyApi(rest),
    )
    lifecycle = LifecycleSettings.of(settings)
    pods = PodStore()
    reconciler = Reconciler(kube, pods, lifecycle, utc_now, outages.windows)
    return SessionController(
        reconciler, SessionStore(), pods, utc_now, leading, settings.expiry_check_interval
    )


def admission_routes(settings: Settings, rest: Rest) -> AdmissionRoutes:
    """The admission webhook's routes; the SessionPolicies a hold's bound needs are read
    through *rest* (the heartbeat API's: the apiserver waits for the answer)."""
    return AdmissionRoutes(
        settings.max_session_bytes, settings.max_hold, utc_now, SessionPolicyApi(rest)
    )


async def lead_once_outages_known(elector: LeaderElector, outages: OutageMonitor) -> None:
    """Run *elector* once the outage record has been read: a leader that knew none of the
    outages the other replicas saw would stop sessions that lease rule 8 keeps."""
    await outages.loaded.wait()
    await elector.run()


async def watch_pods_once_sessions_listed(pods: PodCache, sessions: SessionStore) -> None:
    """Run the Pod watch once the Sessions are listed: at a start, the listing that makes
    the replica ready has the loop and the apiserver to itself; reconciles that need a Pod
    meanwhile wait for the Pods' listing (``Reconciler._pods_listed``). The listed Sessions
    are put out of the garbage collector's reach first (``heap``)."""
    await sessions.wait_synced()
    heap.freeze("the Session listing")
    await pods.run()


async def freeze_once_pods_listed(pods: PodStore) -> None:
    """Put the listed Pods out of the garbage collector's reach (``heap``)."""
    await pods.listed.wait()
    heap.freeze("the Pod listing")


def take_the_lead(controller: SessionController) -> Callable[[], None]:
    """What a replica does as it wins the Lease: the heap out of the garbage collector's
    reach, so that the resync's allocations set off no full collection, then the
    controller's resync."""

    def lead() -> None:
        heap.freeze("winning the Lease")
        controller.resync()

    return lead


async def run_operator(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM: watch Sessions, keep their leases, serve the heartbeat
    API, probes and metrics."""
    api_client = await connect()
    outages = OutageMonitor(CallHealth(utc_now))
    calls = api_calls(api_client, outages)
    leading = asyncio.Event()
    events = EventRecorder(calls.controller)
    controller = build_controller(calls.controller, settings, leading, outages, events)
    metrics.register_session_gauge(controller.store.count_by_state)
    metrics.register_expiring_soon_gauge(controller.store.count_expiring_soon)
    metrics.register_leader_gauge(leading.is_set, LEADER_LEASE_NAME)
    # Also kopf's: its default asks the user database for a name, and a container's
    # user (uid 65532, or an arbitrary one) may have no entry there.
    identity = replica_identity()
    electors = []
    if settings.leader_election:
        leases = LeaseApi(calls.controller, settings.leader_election_namespace, LEADER_LEASE_NAME)
        electors.append(
            LeaderElector(
                leases, identity, utc_now, leading, take_the_lead(controller), outages.add
            )
        )
    else:
        leading.set()

    registry = kopf.OperatorRegistry()
    register_login(registry)
    ready = asyncio.Event()
    # One watch and one store of Sessions in this process: the watch tells the controller,
    # whose store the heartbeat API reads too.
    sessions = SessionCache.for_namespace(calls.informer, settings.namespace, controller)
    pods = PodCache.for_namespace(calls.informer, settings.namespace, controller.pod_feed)
    routes = build_heartbeat_api(calls.heartbeat_api, settings, utc_now, outages, controller.store)
    admission = admission_routes(settings, calls.heartbeat_api)

    def serving() -> bool:
        return ready.is_set() and controller.store.synced and outages.loaded.is_set()

    runners = await start_server(serving, settings, routes, admission)
    logger.info("serving heartbeats, probes and metrics on %s", _listening(settings))
    # The electors first: they are cancelled first, and each releases the Lease.
    background = [lead_once_outages_known(elector, outages) for elector in electors]
    tasks = [
        asyncio.create_task(coroutine)
        for coroutine in (
            *background,
            controller.run(),
            events.run(),
            sessions.run(),
            watch_pods_once_sessions_listed(pods, controller.store),
            freeze_once_pods_listed(controller.pods),
            share_outages(calls.outage_record, outages, settings, serving),
        )
    ]
    # Let the controller spawn its workers now: kopf treats tasks born after its start as
    # its own and, on exit, waits for them before cancelling them.
    await asyncio.sleep(0)
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            standalone=True,
            # kopf's Identity is a NewType of str that kopf does not export: a str is one.
            identity=identity,  # type: ignore[arg-type]
            clusterwide=settings.namespace is None,
            namespaces=[settings.namespace] if settings.namespace else [],
            ready_flag=ready,
        )
    finally:
        await _shut_down(tasks, runners, api_client)


async def serve_api(settings: Settings) -> None:
    """Run only the heartbeat API (no kopf, no lifecycle writes) until SIGINT/SIGTERM.

    It keeps no state of its own, so any number of these may serve beside the operator.
    """
    api_client = await connect()
    outages = OutageMonitor(CallHealth(utc_now))
    calls = api_calls(api_client, outages)
    store = SessionStore()
    sessions = SessionCache.for_namespace(calls.informer, settings.namespace, store)
    routes = build_heartbeat_api(calls.heartbeat_api, settings, utc_now, outages, store)
    admission = admission_routes(settings, calls.heartbeat_api)

    def serving() -> bool:
        return store.synced and outages.loaded.is_set()

    runners = await start_server(serving, settings, routes, admission)
    logger.info("serving heartbeats, probes and metrics on %s", _listening(settings))
    cache_task = asyncio.create_task(sessions.run(), name="session-api-cache")
    outages_task = asyncio.create_task(
        share_outages(calls.outage_record, outages, settings, serving), name="session-api-outages"
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, cache_task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await cache_task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await _shut_down([cache_task, outages_task], runners, api_client)


async def _shut_down(
    tasks: Sequence[asyncio.Task[Any]], runners: Sequence[web.AppRunner], api_client: ApiClient
) -> None:
    """Cancel *tasks* one after the other, each ended before the next is cancelled (a
    leader elector first: it releases the Lease), stop the HTTP *runners*, and close the
    apiserver connection."""
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for runner in runners:
        await runner.cleanup()
    await api_client.close()


def _listening(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert_file else "http"
    where = f"{scheme}://{settings.api_host}:{settings.api_port}"
    return where + (f" (metrics on :{settings.metrics_port})" if settings.metrics_port else "")
