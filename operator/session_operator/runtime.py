"""Assemble and run the operator: kopf, the control loop, and the HTTP server, one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import kopf

from session_operator import metrics
from session_operator.api.server import create_app, start_server
from session_operator.config import Settings
from session_operator.controller.loop import SessionController
from session_operator.controller.reconciler import Reconciler
from session_operator.controller.store import SessionStore
from session_operator.handlers.sessions import register_session_handlers
from session_operator.k8s.client import connect
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.pods import PodApi
from session_operator.k8s.rest import Rest
from session_operator.k8s.sessions import SessionApi
from session_operator.lifecycle import LeaseDefaults

FINALIZER = "xg2g.io/session-lease-operator"

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock, in UTC (the one clock the operator reads)."""
    return datetime.now(UTC)


def configure_logging(settings: Settings) -> None:
    """Structured (JSON) or plain logs at the configured level; quiet by default."""
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, verbose=settings.log_level == "DEBUG")
    logging.getLogger().setLevel(settings.log_level)
    # kopf logs every watch and handler run at INFO; keep it at the configured level.
    for name in ("kopf", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(settings.log_level), 20))


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's behaviour: no Events of its own, annotations for its bookkeeping."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="xg2g.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="xg2g.io", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    # Stop promptly on SIGTERM: a lease decision in flight is a compare-and-set write,
    # safe to abandon; the next leader (or restart) decides again.
    settings.batching.exit_timeout = 0.5
    settings.batching.idle_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    settings.networking.request_timeout = 30
    return settings


async def run_operator(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM: watch Sessions, keep their leases, serve probes and metrics."""
    api_client = await connect()
    rest = Rest(api_client)
    store = SessionStore()
    reconciler = Reconciler(
        SessionApi(rest),
        PodApi(rest),
        EventRecorder(rest),
        LeaseDefaults(settings.lease_ttl, settings.heartbeat_interval),
        utc_now,
    )
    controller = SessionController(reconciler, store, utc_now)
    metrics.register_session_gauge(store.count_by_state)

    registry = kopf.OperatorRegistry()
    register_session_handlers(registry, controller, settings)
    ready = asyncio.Event()
    runner = await start_server(create_app(ready.is_set), settings)
    loop_task = asyncio.create_task(controller.run(), name="session-controller")
    # Let the controller spawn its workers now: kopf treats tasks born after its start as
    # its own and, on exit, waits for them before cancelling them.
    await asyncio.sleep(0)
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            standalone=True,
            clusterwide=settings.namespace is None,
            namespaces=[settings.namespace] if settings.namespace else [],
            ready_flag=ready,
        )
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        await runner.cleanup()
        await api_client.close()
