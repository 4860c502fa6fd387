"""A stop that races a lease extension loses: the 422 from the JSON-patch test re-decides."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from session_operator.controller.reconciler import Kubernetes, Reconciler
from session_operator.informer.pod_store import PodStore
from session_operator.k8s.connection import connect
from session_operator.k8s.errors import PreconditionFailed
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.owned import OwnedObjects
from session_operator.k8s.pods import PodApi
from session_operator.k8s.rest import Rest
from session_operator.k8s.sessions import JsonPatch, SessionApi
from session_operator.lease import SessionState, StopReason
from session_operator.lifecycle import LifecycleSettings
from session_operator.models import Session, SessionRef
from session_operator.timestamps import format_timestamp
from tests.e2e.conftest import Cluster, OperatorProcess
from tests.e2e.sessions import create_session, read_session, wait_for_state


class RecordingSessionApi(SessionApi):
    """Counts lost compare-and-set writes and re-reads."""

    lost_writes = 0
    reads = 0

    async def patch_status(self, ref: SessionRef, operations: JsonPatch) -> Session:
        try:
            return await super().patch_status(ref, operations)
        except PreconditionFailed:
            self.lost_writes += 1
            raise

    async def get(self, ref: SessionRef) -> Session | None:
        self.reads += 1
        return await super().get(ref)


async def test_stop_racing_a_lease_extension_never_stops_the_extended_session(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    lease = {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 5}}
    create_session(cluster, namespace, "raced", lease)
    wait_for_state(cluster, namespace, "raced", {"ready"}, timeout=3)
    ref = SessionRef(namespace=namespace, name="raced")
    api_client = await connect(str(cluster.kubeconfig))
    try:
        rest = Rest(api_client)
        sessions = RecordingSessionApi(rest)
        stale = await sessions.get(ref)
        assert stale is not None
        assert stale.status.lease_expires_at is not None
        old_expiry = stale.status.lease_expires_at

        # A heartbeat lands between the operator's read (`stale`) and its stop write.
        extended = format_timestamp(old_expiry + timedelta(seconds=60))
        heartbeat = {"status": {"leaseExpiresAt": extended, "lastHeartbeat": extended}}
        cluster.kubectl(
            "patch", "session", "raced", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(heartbeat),
        )  # fmt: skip

        clock = _Clock(old_expiry + timedelta(seconds=1))  # the stale lease has lapsed
        kube = Kubernetes(sessions, PodApi(rest), OwnedObjects(rest, ["pods"]), EventRecorder(rest))
        settings = LifecycleSettings(
            lease_ttl=timedelta(seconds=60),
            heartbeat_interval=timedelta(seconds=5),
            stop_timeout=timedelta(seconds=60),
            retention=timedelta(hours=24),
            max_lifetime=None,
            max_lifetime_bound=None,
            start_timeout=timedelta(minutes=10),
            start_timeout_bound=None,
            max_hold=timedelta(hours=8),
            expiry_warning=timedelta(0),
        )
        reconciler = Reconciler(kube, PodStore(), settings, clock)
        outcome = await reconciler.reconcile(stale)

        assert sessions.lost_writes == 1, "the stop must have been refused by the patch test"
        assert sessions.reads == 2, "after the 422 the session must be read again"
        assert outcome.session is not None
        assert outcome.session.status.state is SessionState.READY
        assert outcome.deadline == old_expiry + timedelta(seconds=60)
        stored = read_session(cluster, namespace, "raced")["status"]
        assert (stored["state"], stored["leaseExpiresAt"]) == ("ready", extended)

        # Once the extended lease lapses too, the same path stops the session.
        clock.now = old_expiry + timedelta(seconds=61)
        stopped = await reconciler.reconcile(outcome.session)
        assert stopped.session is not None
        assert stopped.session.status.state is SessionState.STOPPED
        assert stopped.session.status.stop_reason is StopReason.LEASE_EXPIRED
    finally:
        await api_client.close()


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
