"""The watch-fed store of Sessions: newest version wins, counted by state."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from session_operator.controller.store import SessionStore
from session_operator.models import Session, SessionRef

pytestmark = pytest.mark.unit


def make_session(
    resource_version: str,
    state: str | None = "ready",
    *,
    name: str = "living-room",
    namespace: str = "media",
) -> Session:
    status: dict[str, Any] = {}
    if state is not None:
        status = {
            "state": state,
            "leaseTTLSeconds": 60,
            "heartbeatInterval": 5,
            "leaseExpiresAt": "2026-11-23T10:01:00.000Z",
        }
    return Session.from_body(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{namespace}-{name}",
                "resourceVersion": resource_version,
                "generation": 1,
                "creationTimestamp": "2026-11-23T10:00:00Z",
            },
            "spec": {},
            "status": status,
        }
    )


REF = SessionRef(namespace="media", name="living-room")


def test_newer_resource_version_replaces_the_stored_one() -> None:
    store = SessionStore()
    store.update(make_session("10", "new"))
    kept = store.update(make_session("11", "ready"))

    assert kept.resource_version == "11"
    stored = store.get(REF)
    assert stored is not None
    assert stored.resource_version == "11"


def test_older_resource_version_never_replaces_a_newer_one() -> None:
    store = SessionStore()
    store.update(make_session("11", "ready"))
    kept = store.update(make_session("10", "new"))

    assert kept.resource_version == "11"
    stored = store.get(REF)
    assert stored is not None
    assert stored.resource_version == "11"
    assert stored.status.state == "ready"


def test_resource_versions_compare_as_numbers_not_text() -> None:
    store = SessionStore()
    store.update(make_session("100", "ready"))
    store.update(make_session("99", "new"))

    stored = store.get(REF)
    assert stored is not None
    assert stored.resource_version == "100"


def test_same_name_in_another_namespace_is_another_session() -> None:
    store = SessionStore()
    store.update(make_session("20", "ready"))
    store.update(make_session("5", "new", namespace="other"))

    assert len(store) == 2
    other = store.get(SessionRef(namespace="other", name="living-room"))
    assert other is not None
    assert other.resource_version == "5"


def test_removed_session_is_forgotten() -> None:
    store = SessionStore()
    store.update(make_session("10"))
    store.remove(REF)
    store.remove(REF)

    assert store.get(REF) is None
    assert len(store) == 0
    assert list(store) == []


def test_count_by_state_counts_each_state_and_unknown_before_initialisation() -> None:
    store = SessionStore()
    store.update(make_session("1", "ready", name="a"))
    store.update(make_session("2", "ready", name="b"))
    store.update(make_session("3", "stopped", name="c"))
    store.update(make_session("4", None, name="d"))

    counts = store.count_by_state()
    assert counts == Counter({"ready": 2, "stopped": 1, "unknown": 1})
    assert {type(state) for state in counts} == {str}
    assert sorted(counts) == ["ready", "stopped", "unknown"]


def test_count_by_state_follows_updates() -> None:
    store = SessionStore()
    store.update(make_session("1", "ready"))
    store.update(make_session("2", "stopped"))

    assert store.count_by_state() == Counter({"stopped": 1})
