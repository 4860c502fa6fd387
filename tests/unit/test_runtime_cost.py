"""The diff-base storages the runtime profile tries on kopf (bench/runtime/consumer.py)."""

from __future__ import annotations

from typing import cast

import kopf
import pytest

from bench.runtime.consumer import DIFF_BASE_ANNOTATION, NoDiffBaseStorage, SlimDiffBaseStorage
from session_operator.models import FINALIZER, STATE_LABEL
from tests.unit.builders import EXPIRES, live_status, make_body

pytestmark = pytest.mark.unit


def session_body() -> kopf.RawBody:
    """A ready Session as the watch delivers it, with a user's annotation and kopf's own,
    and the managedFields a real object carries."""
    body = make_body(
        spec={"lease": {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}},
        status=live_status(),
        labels={STATE_LABEL: "ready"},
        finalizers=[FINALIZER],
    )
    body["metadata"]["annotations"] = {"note": "kept", DIFF_BASE_ANNOTATION: '{"spec":{}}\n'}
    body["metadata"]["managedFields"] = [{"manager": "bench", "fieldsV1": {"f:status": {}}}]
    return cast(kopf.RawBody, body)


def test_slim_diff_base_builds_the_essence_kopf_builds() -> None:
    body = kopf.Body(session_body())

    slim = SlimDiffBaseStorage().build(body=body)

    assert slim == kopf.AnnotationsDiffBaseStorage().build(body=body)
    assert slim == {
        "spec": {"lease": {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 1}},
        "metadata": {"labels": {STATE_LABEL: "ready"}, "annotations": {"note": "kept"}},
    }


def test_slim_diff_base_keeps_a_handlers_status_field_as_kopf_does() -> None:
    body = kopf.Body(session_body())
    fields = ["status.leaseExpiresAt"]

    slim = SlimDiffBaseStorage().build(body=body, extra_fields=fields)

    assert slim == kopf.AnnotationsDiffBaseStorage().build(body=body, extra_fields=fields)
    assert slim["status"] == {"leaseExpiresAt": EXPIRES}


def test_slim_diff_base_leaves_the_body_alone() -> None:
    raw = session_body()
    essence = SlimDiffBaseStorage().build(body=kopf.Body(raw))

    essence["spec"]["lease"]["ttlSeconds"] = 1

    assert raw == session_body()


def test_no_diff_base_builds_nothing_and_finds_nothing() -> None:
    storage = NoDiffBaseStorage()
    body = kopf.Body(session_body())
    patch = kopf.Patch()

    storage.store(body=body, patch=patch, essence=storage.build(body=body))

    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    assert not patch
