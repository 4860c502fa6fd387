"""The reconciler applies the lifecycle's steps to one Session: compare-and-set writes that
lose are decided again from a fresh read, a Session that never settles is left after a
step limit, and a deleted one is stopped, released and let go."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from session_operator import metrics
from session_operator.controller import reconciler as reconciler_module
from session_operator.controller.reconciler import MAX_STEPS, Kubernetes, Reconciler
from session_operator.informer.pod_store import PodStore
from session_operator.k8s.errors import PreconditionFailed
from session_operator.k8s.events import EventRecorder
from session_operator.k8s.owned import OwnedObjects
from session_operator.k8s.pods import PodApi
from session_operator.k8s.sessions import JsonPatch, SessionApi
from session_operator.lease import SessionState
from session_operator.models import FINALIZER, Session, SessionRef
from session_operator.timestamps import parse_timestamp
from session_operator.workload import PodSummary
from tests.unit.builders import (
    EXPIRES,
    EXPIRES_AT,
    MIDWAY,
    SETTINGS,
    PatchTestFailed,
    apply_patch,
    deleting,
    listed_pods,
    stored,
    with_template,
)


class StoredSession(SessionApi):
    """One Session held in memory; writes apply their JSON patches, tests included."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = copy.deepcopy(body)
        self.writes: list[str] = []
        self.reads = 0

    def _write(self, kind: str, patch: JsonPatch) -> Session:
        try:
            self.body = apply_patch(self.body, patch)
        except PatchTestFailed as failed:
            raise PreconditionFailed(str(failed)) from failed
        metadata = self.body["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)
        self.writes.append(kind)
        return Session.from_body(self.body)

    async def get(self, ref: SessionRef) -> Session | None:
        self.reads += 1
        return Session.from_body(self.body)

    async def patch_status(self, ref: SessionRef, operations: JsonPatch) -> Session:
        return self._write("status", operations)

    async def patch(self, ref: SessionRef, operations: JsonPatch) -> Session:
        return self._write("metadata", operations)

    async def delete(self, session: Session) -> None:
        self.writes.append("delete")


class Events(EventRecorder):
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def record(self, session: Session, reason: str, *_: Any, **__: Any) -> None:
        self.reasons.append(reason)


class Owned(OwnedObjects):
    """What a release finds still there, call after call."""

    def __init__(self, remaining: Sequence[int]) -> None:
        self.remaining = list(remaining)

    async def release(self, session: Session) -> int:
        return self.remaining.pop(0)


class NoPods(PodApi):
    def __init__(self) -> None:
        pass

    async def read_workload(self, session: Session) -> PodSummary | None:
        return None


def reconciler_over(sessions: StoredSession, owned: Owned, now: Any) -> tuple[Reconciler, Events]:
    events = Events()
    kube = Kubernetes(sessions, NoPods(), owned, events)
    return Reconciler(kube, listed_pods(), SETTINGS, lambda: now), events


async def test_an_expired_session_is_stopped_then_labelled_and_kept_for_its_retention() -> None:
    sessions = StoredSession(stored())
    reconciler, events = reconciler_over(sessions, Owned([]), EXPIRES_AT)

    stop = await reconciler.reconcile(Session.from_body(sessions.body))

    # The stop is one write; its label is left to a routine pass behind the due stops.
    assert sessions.writes == ["status"]
    assert events.reasons == ["LeaseExpired"]
    assert stop.session is not None
    assert stop.session.status.state == "stopped"
    assert (stop.deadline, stop.again) == (None, True)

    label = await reconciler.reconcile(stop.session)

    assert sessions.writes == ["status", "metadata"]
    assert sessions.body["metadata"]["labels"]["xg2g.io/state"] == "stopped"
    assert events.reasons == ["LeaseExpired"]
    assert (label.deadline, label.again) == (EXPIRES_AT + SETTINGS.retention, False)


async def test_an_expiry_whose_pod_is_gone_at_once_ends_in_one_pass_labelled_in_the_next() -> None:
    sessions = StoredSession(with_template(SessionState.READY))
    owned = Owned([0])  # the Pod's DELETE answered that it is gone (no node ran it)
    reconciler, events = reconciler_over(sessions, owned, EXPIRES_AT)

    stop = await reconciler.reconcile(Session.from_body(sessions.body))

    # stopping, then stopped, one Event and the Pod's DELETE; then the label (for stopped).
    assert sessions.writes == ["status", "status"]
    assert events.reasons == ["LeaseExpired"]
    assert sessions.body["status"]["state"] == "stopped"
    assert (stop.deadline, stop.again) == (None, True)
    assert stop.session is not None

    label = await reconciler.reconcile(stop.session)

    assert sessions.writes == ["status", "status", "metadata"]
    assert sessions.body["metadata"]["labels"]["xg2g.io/state"] == "stopped"
    assert label.deadline == EXPIRES_AT + SETTINGS.retention


async def test_an_expiry_whose_pod_takes_time_is_labelled_stopping_and_polled() -> None:
    sessions = StoredSession(with_template(SessionState.READY))
    owned = Owned([1, 0])  # terminating at the first look (a kubelet's grace), gone next
    reconciler, events = reconciler_over(sessions, owned, EXPIRES_AT)

    first = await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.writes == ["status", "metadata"]
    assert sessions.body["metadata"]["labels"]["xg2g.io/state"] == "stopping"
    assert events.reasons == ["LeaseExpired"]
    assert first.deadline is not None
    assert first.deadline <= EXPIRES_AT + timedelta(seconds=1)

    await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.writes == ["status", "metadata", "status", "metadata"]
    assert sessions.body["metadata"]["labels"]["xg2g.io/state"] == "stopped"
    assert events.reasons == ["LeaseExpired", "Stopped"]


async def test_an_expiry_in_a_backlog_is_written_first_and_released_in_a_follow_up() -> None:
    sessions = StoredSession(with_template(SessionState.READY))
    owned = Owned([0])
    reconciler, events = reconciler_over(sessions, owned, EXPIRES_AT)

    stop = await reconciler.reconcile(Session.from_body(sessions.body), others_due=lambda: True)

    # Only the stop's write while other stops wait; nothing released, nothing told yet.
    assert sessions.writes == ["status"]
    assert sessions.body["status"]["state"] == "stopping"
    assert owned.remaining == [0]
    assert events.reasons == []
    assert (stop.deadline, stop.again) == (None, True)
    assert stop.session is not None

    finish = await reconciler.reconcile(stop.session, others_due=lambda: True)

    # The same writes and the one Event as a stop released at once (no "stopping" label).
    assert owned.remaining == []
    assert sessions.writes == ["status", "status"]
    assert sessions.body["status"]["state"] == "stopped"
    assert events.reasons == ["LeaseExpired"]
    assert (finish.deadline, finish.again) == (None, True)


async def test_a_backlog_stop_whose_pod_takes_time_is_told_then_labelled_and_polled() -> None:
    sessions = StoredSession(with_template(SessionState.READY))
    reconciler, events = reconciler_over(sessions, Owned([1]), EXPIRES_AT)
    stop = await reconciler.reconcile(Session.from_body(sessions.body), others_due=lambda: True)
    assert stop.session is not None

    release = await reconciler.reconcile(stop.session)

    assert sessions.writes == ["status", "metadata"]
    assert sessions.body["metadata"]["labels"]["xg2g.io/state"] == "stopping"
    assert events.reasons == ["LeaseExpired"]
    assert release.deadline is not None


async def test_a_backlog_stop_forgotten_is_released_as_any_stopping_session() -> None:
    sessions = StoredSession(with_template(SessionState.READY))
    reconciler, events = reconciler_over(sessions, Owned([0]), EXPIRES_AT)
    stop = await reconciler.reconcile(Session.from_body(sessions.body), others_due=lambda: True)
    assert stop.session is not None
    reconciler.forget(stop.session.ref)

    await reconciler.reconcile(stop.session)

    # What a new leader does with a stopping session: its label, the release, the end's
    # status and label, and an Event for the end alone.
    assert sessions.writes == ["status", "metadata", "status", "metadata"]
    assert sessions.body["status"]["state"] == "stopped"
    assert events.reasons == ["Stopped"]


async def test_a_stop_asked_for_whose_pod_is_gone_at_once_is_told_as_stopped() -> None:
    sessions = StoredSession(stored(spec={"template": {"spec": {}}, "stop": True}))
    reconciler, events = reconciler_over(sessions, Owned([0]), MIDWAY)

    await reconciler.reconcile(Session.from_body(sessions.body))

    assert sessions.body["status"]["stopReason"] == "USER_STOPPED"
    assert events.reasons == ["Stopped"]


async def test_a_lost_compare_and_set_is_decided_again_from_a_fresh_read() -> None:
    sessions = StoredSession(stored())
    stale = Session.from_body(sessions.body)
    # A heartbeat extended the lease after the copy the reconciler holds was read.
    sessions.body["status"]["leaseExpiresAt"] = "2026-11-23T10:05:00.000Z"
    reconciler, events = reconciler_over(sessions, Owned([]), EXPIRES_AT)

    outcome = await reconciler.reconcile(stale)

    assert sessions.reads == 1
    assert sessions.writes == []  # the fresh lease runs on: nothing to write
    assert events.reasons == []
    assert outcome.session is not None
    assert outcome.session.status.state == "ready"
    assert outcome.deadline is not None
    assert outcome.deadline.isoformat() == "2026-11-23T10:05:00+00:00"


async def test_a_session_that_keeps_changing_is_left_after_the_step_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unsettled(StoredSession):
        """Every label write is undone by someone else before the next read."""

        async def patch(self, ref: SessionRef, operations: JsonPatch) -> Session:
            self.writes.append("metadata")
            return Session.from_body(self.body)

    sessions = Unsettled(stored(label="new"))
    reconciler, _ = reconciler_over(sessions, Owned([]), MIDWAY)

    with caplog.at_level(logging.WARNING):
        outcome = await reconciler.reconcile(Session.from_body(sessions.body))

    assert sessions.writes == ["metadata"] * MAX_STEPS
    assert outcome.deadline == MIDWAY  # look again at once, through the queue
    assert f"still changing after {MAX_STEPS} steps" in caplog.text


async def test_a_deleted_session_is_stopped_released_and_let_go() -> None:
    sessions = StoredSession(deleting(with_template_ready()))
    owned = Owned([1, 0])  # the Pod is still going at the first look, gone at the second
    now = MIDWAY
    reconciler, events = reconciler_over(sessions, owned, now)

    first = await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.body["status"]["state"] == "stopping"
    assert sessions.body["status"]["stopReason"] == "CLEANUP"
    assert first.deadline is not None  # polls the release
    assert first.deadline <= now + timedelta(seconds=1)

    second = await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.body["status"]["state"] == "stopped"
    assert FINALIZER not in sessions.body["metadata"].get("finalizers", [])
    assert sessions.writes == ["status", "status", "metadata"]
    assert events.reasons == ["Stopping", "Stopped"]
    assert second.deadline is None


def with_template_ready() -> dict[str, Any]:
    body = with_template(SessionState.READY)
    body["metadata"]["finalizers"] = ["example.com/keep", FINALIZER]
    return body


class ForgedPod(PodApi):
    """A Ready Pod named after the session, made by someone else (not its controller)."""

    def __init__(self) -> None:
        pass

    async def read_workload(self, session: Session) -> PodSummary | None:
        return PodSummary(
            session=session.ref,
            name=session.ref.name,
            controller_uid="someone-else",
            phase="Running",
            ready=True,
            message="",
        )


async def test_a_pod_named_after_a_session_but_not_its_own_tells_nothing_of_it() -> None:
    sessions = StoredSession(with_template(SessionState.STARTING))
    events = Events()
    kube = Kubernetes(sessions, ForgedPod(), Owned([0, 0, 0]), events)
    reconciler = Reconciler(kube, listed_pods(), SETTINGS, lambda: MIDWAY)

    await reconciler.reconcile(Session.from_body(sessions.body))

    assert sessions.body["status"]["state"] != "ready"
    assert "Ready" not in events.reasons


class CountedPods(PodApi):
    """Reads of a Pod that is running and ready, counted."""

    def __init__(self) -> None:
        self.reads = 0

    async def read_workload(self, session: Session) -> PodSummary | None:
        self.reads += 1
        return running_pod(session)


def running_pod(session: Session) -> PodSummary:
    return PodSummary(
        session=session.ref,
        name=session.ref.name,
        controller_uid=session.uid,
        phase="Running",
        ready=True,
        message="",
    )


async def test_a_pod_missing_before_the_first_listing_is_awaited_not_read() -> None:
    sessions = StoredSession(with_template(SessionState.STARTING))
    session = Session.from_body(sessions.body)
    pods, store = CountedPods(), PodStore()
    kube = Kubernetes(sessions, pods, Owned([]), Events())
    reconciler = Reconciler(kube, store, SETTINGS, lambda: MIDWAY)

    reconcile = asyncio.create_task(reconciler.reconcile(session))
    await asyncio.sleep(0.05)
    assert not reconcile.done()  # waiting for the listing
    store.replace_all([running_pod(session)])
    store.mark_listed()
    await reconcile

    assert pods.reads == 0
    assert sessions.body["status"]["state"] == "ready"


async def test_a_pod_listing_that_never_comes_is_waited_for_once_then_pods_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconciler_module, "POD_LISTING_WAIT", timedelta(milliseconds=200))
    pods, store = CountedPods(), PodStore()
    sessions = StoredSession(with_template(SessionState.STARTING))
    reconciler = Reconciler(
        Kubernetes(sessions, pods, Owned([]), Events()), store, SETTINGS, lambda: MIDWAY
    )
    started = asyncio.get_running_loop().time()
    for _ in range(3):
        session = Session.from_body(sessions.body)
        await reconciler.reconcile(session)
        store.remove(running_pod(session))  # gone from the watch again

    assert sessions.body["status"]["state"] == "ready"
    assert pods.reads == 3
    assert asyncio.get_running_loop().time() - started < 0.4  # one wait, not one per Session


def stops_counted(stop_reason: str, reason: str) -> float:
    labels = {"stop_reason": stop_reason, "reason": reason}
    return metrics.REGISTRY.get_sample_value("xg2g_sessions_stopped_total", labels) or 0.0


async def test_a_session_at_the_end_of_its_lifetime_is_told_once_as_max_lifetime_reached() -> None:
    sessions = StoredSession(stored(lifetimeEndsAt=EXPIRES))
    reconciler, events = reconciler_over(sessions, Owned([]), EXPIRES_AT)
    before = stops_counted("LEASE_EXPIRED", "MaxLifetimeReached")

    await reconciler.reconcile(Session.from_body(sessions.body))

    assert events.reasons == ["MaxLifetimeReached"]
    status = sessions.body["status"]
    assert (status["state"], status["stopReason"]) == ("stopped", "LEASE_EXPIRED")
    assert stops_counted("LEASE_EXPIRED", "MaxLifetimeReached") == before + 1


async def test_a_start_timeout_whose_pod_is_gone_at_once_is_told_once_as_start_timeout() -> None:
    start_deadline = "2026-11-23T10:00:30.123Z"
    sessions = StoredSession(with_template(SessionState.STARTING, startDeadline=start_deadline))
    pods = PodStore()
    pods.update(
        PodSummary(
            session=SessionRef("media", "living-room"),
            name="living-room",
            controller_uid=sessions.body["metadata"]["uid"],
            phase="Pending",
            ready=False,
            message="",
        )
    )
    events = Events()
    kube = Kubernetes(sessions, NoPods(), Owned([0]), events)
    now = parse_timestamp(start_deadline)
    reconciler = Reconciler(kube, pods, SETTINGS, lambda: now)
    before = stops_counted("FAILED", "StartTimeout")

    outcome = await reconciler.reconcile(Session.from_body(sessions.body))

    # One pass: stopping, then failed once the unscheduled Pod's DELETE ended it; one Event.
    assert events.reasons == ["StartTimeout"]
    status = sessions.body["status"]
    assert (status["state"], status["stopReason"]) == ("failed", "FAILED")
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Ready": "StartTimeout",
        "LeaseValid": "StartTimeout",
    }
    assert stops_counted("FAILED", "StartTimeout") == before + 1
    assert (outcome.deadline, outcome.again) == (None, True)  # the label follows
    assert outcome.session is not None
    labelled = await reconciler.reconcile(outcome.session)
    assert labelled.deadline == now + SETTINGS.retention
    assert events.reasons == ["StartTimeout"]
