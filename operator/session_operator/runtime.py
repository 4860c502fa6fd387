"""Assemble and run the operator: kopf, the control loop, and the HTTP server, one loop;
or the heartbeat API alone (``serve-api``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

import kopf
from kubernetes_asyncio.client import ApiClient

from session_operator import metrics
from session_operator.api.admission import AdmissionRoutes
from session_operator.api.cache import SessionCache
from session_operator.api.server import start_server
from session_operator.api.wiring import build_heartbeat_api
from session_operator.call_health import CallHealth
from session_operator.config import Settings
from session_operator.controller.election import LeaderElector, replica_identity
from session_operator.controller.loop import SessionController
from session_operator.controller.pod_store import PodStore
from session_operator.controller.reconciler import Kubernetes, Reconciler
from session_operator.controller.session_store import SessionStore
from session_operator.handlers.pods import register_pod_handlers
from session_operator.k8s.connection import connect
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.leader_lease import LeaseApi
from session_operator.k8s.outage_record import OutageMonitor, OutageRecordApi
from session_operator.k8s.owned import OwnedObjects
from session_operator.k8s.pods import PodApi
from session_operator.k8s.rest import Rest
from session_operator.k8s.sessions import SessionApi
from session_operator.lifecycle import LifecycleSettings
from session_operator.models import SESSION_LABEL

# The outage record's calls give up as soon as the heartbeat API's do.
OUTAGE_RECORD_TIMEOUT_SECONDS = 2.0
# No call of the controller waits for ever: a hung one is retried as an unreachable
# apiserver's (the leader's Lease calls have tighter deadlines of their own).
CONTROLLER_CALL_TIMEOUT_SECONDS = 30.0

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
    """kopf's behaviour: it watches the workload Pods only, posts no Events of its own,
    and stops promptly."""
    settings = kopf.OperatorSettings()
    # The apiserver filters the Pod list and watch (labelSelector): the cluster's other
    # Pods never reach the operator, and the handler's own label filter never sees them.
    settings.watching.label_selectors["", "v1", "pods"] = SESSION_LABEL
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    # Stop promptly on SIGTERM: a lease decision in flight is a compare-and-set write,
    # safe to abandon; the next leader (or restart) decides again.
    settings.queueing.exit_timeout = 0.5
    settings.queueing.idle_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    settings.networking.request_timeout = 30
    return settings


async def share_outages(api_client: ApiClient, outages: OutageMonitor, settings: Settings) -> None:
    """Share *outages* through the record in the leader-election namespace, until
    cancelled."""
    rest = Rest(api_client, timeout=OUTAGE_RECORD_TIMEOUT_SECONDS, observer=outages.health)
    await outages.run(OutageRecordApi(rest, settings.leader_election_namespace))


def build_controller(
    rest: Rest, settings: Settings, leading: asyncio.Event, outages: OutageMonitor
) -> SessionController:
    """The control loop with its stores, reconciler and apiserver calls; it takes steps
    only while *leading* is set, and gives a grace for the *outages*."""
    kube = Kubernetes(
        SessionApi(rest),
        PodApi(rest),
        OwnedObjects(rest, settings.released_kinds),
        EventRecorder(rest),
    )
    lifecycle = LifecycleSettings(
        lease_ttl=settings.lease_ttl,
        heartbeat_interval=settings.heartbeat_interval,
        stop_timeout=settings.stop_timeout,
        retention=settings.retention,
    )
    pods = PodStore()
    reconciler = Reconciler(kube, pods, lifecycle, utc_now, outages.windows)
    return SessionController(
        reconciler, SessionStore(), pods, utc_now, leading, settings.expiry_check_interval
    )


async def run_operator(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM: watch Sessions, keep their leases, serve the heartbeat
    API, probes and metrics."""
    api_client = await connect()
    outages = OutageMonitor(CallHealth(utc_now))
    rest = Rest(api_client, timeout=CONTROLLER_CALL_TIMEOUT_SECONDS, observer=outages.health)
    leading = asyncio.Event()
    controller = build_controller(rest, settings, leading, outages)
    metrics.register_session_gauge(controller.store.count_by_state)
    # Also kopf's: its default asks the user database for a name, and a container's
    # user (uid 65532, or an arbitrary one) may have no entry there.
    identity = replica_identity()
    electors = []
    if settings.leader_election:
        leases = LeaseApi(rest, settings.leader_election_namespace, LEADER_LEASE_NAME)
        electors.append(
            LeaderElector(leases, identity, utc_now, leading, controller.resync, outages.add)
        )
    else:
        leading.set()

    registry = kopf.OperatorRegistry()
    register_pod_handlers(registry, controller)
    ready = asyncio.Event()
    # One watch and one store of Sessions in this process: the watch tells the controller,
    # whose store the heartbeat API reads too.
    sessions = SessionCache.for_namespace(api_client, settings.namespace, controller)
    routes = build_heartbeat_api(api_client, settings, utc_now, outages, controller.store)
    admission = AdmissionRoutes(settings.max_session_bytes)
    runners = await start_server(
        lambda: ready.is_set() and controller.store.synced, settings, routes, admission
    )
    logger.info("serving heartbeats, probes and metrics on %s", _listening(settings))
    background = [elector.run() for elector in electors]
    tasks = [
        asyncio.create_task(coroutine)
        for coroutine in (
            *background,
            controller.run(),
            sessions.run(),
            share_outages(api_client, outages, settings),
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
        for task in tasks:  # the elector first: it releases the Lease
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners:
            await runner.cleanup()
        await api_client.close()


async def serve_api(settings: Settings) -> None:
    """Run only the heartbeat API (no kopf, no lifecycle writes) until SIGINT/SIGTERM.

    It keeps no state of its own, so any number of these may serve beside the operator.
    """
    api_client = await connect()
    outages = OutageMonitor(CallHealth(utc_now))
    store = SessionStore()
    sessions = SessionCache.for_namespace(api_client, settings.namespace, store)
    routes = build_heartbeat_api(api_client, settings, utc_now, outages, store)
    admission = AdmissionRoutes(settings.max_session_bytes)
    runners = await start_server(lambda: store.synced, settings, routes, admission)
    logger.info("serving heartbeats, probes and metrics on %s", _listening(settings))
    cache_task = asyncio.create_task(sessions.run(), name="session-api-cache")
    outages_task = asyncio.create_task(
        share_outages(api_client, outages, settings), name="session-api-outages"
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, cache_task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await cache_task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        outages_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outages_task
        for runner in runners:
            await runner.cleanup()
        await api_client.close()


def _listening(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert_file else "http"
    where = f"{scheme}://{settings.api_host}:{settings.api_port}"
    return where + (f" (metrics on :{settings.metrics_port})" if settings.metrics_port else "")
