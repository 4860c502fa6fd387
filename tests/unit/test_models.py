"""Decoding a Session body as the API returns it (crds/sessions.xg2g.io.yaml)."""

from __future__ import annotations

import dataclasses
import gc
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_operator.lease import Lease, SessionState, StopReason
from session_operator.models import FINALIZER, Session, SessionRef

pytestmark = pytest.mark.unit

UID = "6f1c1f9e-0000-4000-8000-000000000001"


def make_body(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "living-room",
        "namespace": "media",
        "uid": UID,
        "resourceVersion": "1234",
        "generation": 3,
        "creationTimestamp": "2026-11-23T09:59:00Z",
        "labels": {"xg2g.io/state": "ready", "team": "media"},
    }
    meta.update(metadata)
    body: dict[str, Any] = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": meta,
        "spec": {
            "lease": {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5},
            "stop": True,
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    if status is not None:
        body["status"] = status
    return body


def full_status() -> dict[str, Any]:
    return {
        "state": "stopped",
        "sessionID": UID,
        "leaseTTLSeconds": 60,
        "heartbeatInterval": 5,
        "leaseExpiresAt": "2026-11-23T10:00:05.123Z",
        "lastHeartbeat": "2026-11-23T09:59:05.123Z",
        "stopReason": "LEASE_EXPIRED",
        "stoppedAt": "2026-11-23T10:00:05.200Z",
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "False"}],
    }


def test_metadata_is_decoded() -> None:
    session = Session.from_body(make_body())

    assert session.ref == SessionRef(namespace="media", name="living-room")
    assert str(session.ref) == "media/living-room"
    assert session.uid == UID
    assert session.resource_version == "1234"
    assert session.generation == 3
    assert session.created_at == datetime(2026, 11, 23, 9, 59, tzinfo=UTC)
    assert session.state_label == "ready"
    assert session.has_labels
    assert session.finalizer_index is None
    assert not session.has_finalizers


def test_spec_is_decoded_from_its_camel_case_names() -> None:
    spec = Session.from_body(make_body()).spec

    assert spec.lease is not None
    assert spec.lease.ttl_seconds == 60
    assert spec.lease.heartbeat_interval_seconds == 5
    assert spec.stop is True
    assert spec.has_template is True


def test_limits_are_decoded_from_spec_and_status() -> None:
    body = make_body(full_status() | {"lifetimeEndsAt": "2026-11-23T11:00:00.000Z"})
    body["spec"] = {
        "lease": {"maxLifetimeSeconds": 3600},
        "template": {},
        "startTimeoutSeconds": 90,
    }
    body["status"]["startDeadline"] = "2026-11-23T10:01:30.000Z"
    session = Session.from_body(body)

    assert session.spec.lease is not None
    assert session.spec.lease.max_lifetime_seconds == 3600
    assert session.spec.lease.ttl_seconds is None  # the operator's TTL applies
    assert session.spec.start_timeout_seconds == 90
    lease = session.lease()
    assert lease is not None
    assert lease.lifetime_ends_at == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert lease.start_deadline == datetime(2026, 11, 23, 10, 1, 30, tzinfo=UTC)


def test_the_template_itself_is_not_kept_in_memory() -> None:
    session = Session.from_body(make_body())
    assert "busybox" not in repr(session)
    assert "busybox" not in str(dataclasses.asdict(session))


def test_empty_spec_means_no_lease_no_stop_no_template() -> None:
    body = make_body()
    body["spec"] = {}
    spec = Session.from_body(body).spec

    assert spec.lease is None
    assert spec.stop is False
    assert spec.has_template is False


def test_status_fields_are_decoded_from_their_aliases() -> None:
    session = Session.from_body(make_body(full_status()))
    status = session.status

    assert status.state is SessionState.STOPPED
    assert status.session_id == UID
    assert status.lease_ttl_seconds == 60
    assert status.heartbeat_interval == 5
    assert status.lease_expires_at == datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)
    assert status.last_heartbeat == datetime(2026, 11, 23, 9, 59, 5, 123000, tzinfo=UTC)
    assert status.stop_reason is StopReason.LEASE_EXPIRED
    assert status.stopped_at == datetime(2026, 11, 23, 10, 0, 5, 200000, tzinfo=UTC)
    assert status.observed_generation == 3
    assert session.conditions == [{"type": "Ready", "status": "False"}]


def test_missing_status_decodes_to_an_empty_status() -> None:
    session = Session.from_body(make_body(None))

    assert session.status.state is None
    assert session.status.lease_expires_at is None
    assert session.raw_status == {}
    assert not session.initialised


def test_unknown_status_fields_are_ignored() -> None:
    status = full_status() | {"kopf": {"progress": {}}}
    session = Session.from_body(make_body(status))

    assert session.status.state is SessionState.STOPPED


def test_missing_labels_decode_to_no_labels() -> None:
    body = make_body()
    del body["metadata"]["labels"]
    session = Session.from_body(body)

    assert session.state_label is None
    assert not session.has_labels


def test_labels_without_the_state_label_are_still_labels() -> None:
    session = Session.from_body(make_body(labels={"team": "media"}))

    assert session.state_label is None
    assert session.has_labels


@pytest.mark.parametrize(
    ("finalizers", "index"),
    [
        pytest.param([FINALIZER], 0, id="ours"),
        pytest.param(["example.com/a", FINALIZER, "example.com/b"], 1, id="ours-among-others"),
        pytest.param(["example.com/a"], None, id="others-only"),
    ],
)
def test_finalizers_decode_to_where_ours_is(finalizers: list[str], index: int | None) -> None:
    session = Session.from_body(make_body(finalizers=finalizers))

    assert session.finalizer_index == index
    assert session.has_finalizers


def held_per_session(bodies: list[bytes]) -> float:
    """Bytes that each decoded Session keeps allocated once its raw JSON is gone."""
    Session.from_body(json.loads(bodies[0]))  # the first decoding fills pydantic's caches
    gc.collect()
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [Session.from_body(json.loads(raw)) for raw in bodies]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not already_tracing:
            tracemalloc.stop()
    return held / len(kept)


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def padded_body(index: int) -> dict[str, Any]:
    """A Session as large as the webhook admits, of what a user with ``edit`` rights may
    make large: labels, annotations, finalizers and the template, in many short entries
    (the most memory per byte of JSON)."""
    body = make_body(full_status(), name=f"session-{index}", uid=f"uid-{index}")
    metadata = body["metadata"]
    metadata["labels"] |= {f"k{index}-{i}": "" for i in range(3_500)}
    metadata["annotations"] = {f"a{index}-{i}": "" for i in range(3_500)}
    metadata["finalizers"] = [*(f"example.com/{index}-{i}" for i in range(1_000)), FINALIZER]
    body["spec"]["template"]["metadata"] = {"labels": {f"t{i}": "" for i in range(1_000)}}
    return body


def test_large_metadata_and_template_keep_no_memory_after_decoding() -> None:
    padded = [encoded(padded_body(index)) for index in range(20)]
    plain = [
        encoded(make_body(full_status(), name=f"session-{index}", uid=f"uid-{index}"))
        for index in range(20)
    ]
    assert min(map(len, padded)) >= 100 * 1024

    per_padded, per_plain = held_per_session(padded), held_per_session(plain)

    # What stays is the status and a few fields, as for a Session without any of it.
    assert per_padded - per_plain < 256, (per_padded, per_plain)
    assert per_padded < 4 * 1024, per_padded


def test_lease_is_none_before_initialisation() -> None:
    assert Session.from_body(make_body(None)).lease() is None
    assert Session.from_body(make_body({})).lease() is None


@pytest.mark.parametrize(
    "missing", ["state", "leaseExpiresAt", "leaseTTLSeconds", "heartbeatInterval"]
)
def test_lease_is_none_while_any_lease_field_is_missing(missing: str) -> None:
    status = full_status()
    del status[missing]

    assert Session.from_body(make_body(status)).lease() is None


def test_lease_carries_the_status_values() -> None:
    lease = Session.from_body(make_body(full_status())).lease()

    assert lease == Lease(
        state=SessionState.STOPPED,
        expires_at=datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC),
        last_heartbeat=datetime(2026, 11, 23, 9, 59, 5, 123000, tzinfo=UTC),
        ttl=timedelta(seconds=60),
        heartbeat_interval=timedelta(seconds=5),
        stop_reason=StopReason.LEASE_EXPIRED,
    )


def test_lease_before_the_first_heartbeat_has_no_last_heartbeat() -> None:
    status = full_status()
    del status["lastHeartbeat"]
    lease = Session.from_body(make_body(status)).lease()

    assert lease is not None
    assert lease.last_heartbeat is None


def test_initialised_once_state_and_expiry_are_written() -> None:
    assert Session.from_body(make_body(full_status())).initialised
    assert not Session.from_body(make_body({"state": "ready"})).initialised


@pytest.mark.parametrize(
    ("raw", "instant"),
    [
        pytest.param(
            "2026-11-23T10:00:05.123Z",
            datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC),
            id="canonical",
        ),
        pytest.param(
            "2026-11-23T10:00:05Z", datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC), id="no-fraction"
        ),
        pytest.param(
            "2026-11-23T11:00:05.123000+01:00",
            datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC),
            id="offset-and-microseconds",
        ),
    ],
)
def test_raw_status_keeps_the_exact_stored_strings(raw: str, instant: datetime) -> None:
    status = full_status() | {"state": "ready", "leaseExpiresAt": raw}
    session = Session.from_body(make_body(status))

    assert session.raw_status["leaseExpiresAt"] == raw
    assert session.raw_status["state"] == "ready"
    assert session.status.lease_expires_at == instant
    assert session.raw_status == status
