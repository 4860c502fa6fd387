"""The watch-fed store of Sessions: newest version wins, counted by state."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from session_operator.informer.session_store import SessionStore, is_newer
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


def expiring(
    name: str, version: str, expires_at: str, state: str = "ready", start_deadline: str = ""
) -> Session:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "media",
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "creationTimestamp": "2026-11-23T10:00:00Z",
        },
        "status": {
            "state": state,
            "leaseTTLSeconds": 60,
            "heartbeatInterval": 5,
            "leaseExpiresAt": expires_at,
        },
    }
    if state in ("stopping", "stopped", "failed"):
        body["status"]["stopReason"] = "LEASE_EXPIRED"
    if start_deadline:
        body["status"]["startDeadline"] = start_deadline
    return Session.from_body(body)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_lapsed_lists_live_sessions_whose_lease_ran_out_earliest_first() -> None:
    store = SessionStore()
    store.update(expiring("late", "1", "2026-11-23T10:02:00Z"))
    store.update(expiring("early", "2", "2026-11-23T10:01:00Z", state="new"))
    store.update(expiring("future", "3", "2026-11-23T11:00:00Z", state="starting"))
    store.update(expiring("over", "4", "2026-11-23T10:00:30Z", state="stopped"))
    assert store.lapsed(at("2026-11-23T10:00:59+00:00")) == []
    assert [ref.name for ref in store.lapsed(at("2026-11-23T10:01:00+00:00"))] == ["early"]
    assert [ref.name for ref in store.lapsed(at("2026-11-23T10:05:00+00:00"))] == [
        "early",
        "late",
    ]
    # Asking again lists them again: a lapsed session stays until it changes.
    assert len(store.lapsed(at("2026-11-23T10:05:00+00:00"))) == 2


def test_an_extended_stopped_or_deleted_session_is_no_longer_lapsed() -> None:
    store = SessionStore()
    for name in ("extended", "stopped", "deleted"):
        store.update(expiring(name, "1", "2026-11-23T10:01:00Z"))
    store.update(expiring("extended", "2", "2026-11-23T10:09:00Z"))
    store.update(expiring("stopped", "2", "2026-11-23T10:01:00Z", state="stopping"))
    store.remove(SessionRef(namespace="media", name="deleted"))
    assert store.lapsed(at("2026-11-23T10:05:00+00:00")) == []


def test_an_older_version_does_not_move_the_expiry_back() -> None:
    store = SessionStore()
    store.update(expiring("s", "5", "2026-11-23T10:09:00Z"))
    store.update(expiring("s", "4", "2026-11-23T10:01:00Z"))
    assert store.lapsed(at("2026-11-23T10:05:00+00:00")) == []


def test_a_starting_session_is_due_at_its_start_deadline_when_that_comes_first() -> None:
    store = SessionStore()
    for name in ("starting", "ready"):
        store.update(expiring(name, "1", "2026-11-23T10:10:00Z", name, "2026-11-23T10:01:00Z"))
    assert store.lapsed(at("2026-11-23T10:00:59+00:00")) == []
    # The ready one started in time: only the lease's expiry counts for it.
    assert [ref.name for ref in store.lapsed(at("2026-11-23T10:01:00+00:00"))] == ["starting"]


def test_live_deadlines_name_each_live_session_with_its_next_deadline() -> None:
    store = SessionStore()
    store.update(expiring("ready", "1", "2026-11-23T10:02:00Z"))
    store.update(
        expiring("starting", "2", "2026-11-23T10:10:00Z", "starting", "2026-11-23T10:01:00Z")
    )
    store.update(expiring("over", "3", "2026-11-23T10:00:30Z", state="stopped"))
    store.update(expiring("gone", "4", "2026-11-23T10:03:00Z"))
    store.remove(SessionRef(namespace="media", name="gone"))

    assert sorted((ref.name, deadline) for ref, deadline in store.live_deadlines()) == [
        ("ready", at("2026-11-23T10:02:00+00:00")),
        ("starting", at("2026-11-23T10:01:00+00:00")),
    ]


def test_lapsed_costs_only_what_lapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore()
    for number in range(10_000):
        store.update(expiring(f"s{number}", "1", "2026-11-23T11:00:00Z"))
    store.update(expiring("gone", "1", "2026-11-23T10:00:00Z"))
    compared = 0
    original = datetime.__le__

    class CountingTime(datetime):
        def __ge__(self, other: object) -> bool:
            nonlocal compared
            compared += 1
            return original(other, self)  # type: ignore[arg-type]

    now = CountingTime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert [ref.name for ref in store.lapsed(now)] == ["gone"]
    assert compared <= 5


REF = SessionRef(namespace="media", name="living-room")


def indexed_session(
    version: int, session_id: str | None = "uid-1", name: str = REF.name
) -> Session:
    status: dict[str, Any] = {"state": "ready"}
    if session_id is not None:
        status["sessionID"] = session_id
    return Session.from_body(
        {
            "metadata": {
                "namespace": REF.namespace,
                "name": name,
                "uid": "uid-1",
                "resourceVersion": str(version),
                "creationTimestamp": "2026-11-23T09:59:00Z",
            },
            "status": status,
        }
    )


def test_session_is_found_by_ref_and_once_initialised_by_id() -> None:
    store = SessionStore()
    store.update(indexed_session(1, session_id=None))
    assert store.get(REF) is not None
    assert store.by_id("uid-1") is None
    store.update(indexed_session(2))
    found = store.by_id("uid-1")
    assert found is not None
    assert found.resource_version == "2"


def test_older_version_never_replaces_a_newer_one() -> None:
    store = SessionStore()
    store.update(indexed_session(5))
    store.update(indexed_session(4))
    store.refresh(indexed_session(3))
    found = store.get(REF)
    assert found is not None
    assert found.resource_version == "5"


def test_refresh_does_not_bring_back_a_deleted_session() -> None:
    store = SessionStore()
    store.update(indexed_session(1))
    store.remove(REF)
    store.refresh(indexed_session(2))
    assert store.get(REF) is None
    assert store.by_id("uid-1") is None


def test_refresh_takes_a_newer_known_session() -> None:
    store = SessionStore()
    store.update(indexed_session(1))
    store.refresh(indexed_session(2))
    found = store.get(REF)
    assert found is not None
    assert found.resource_version == "2"


def test_replace_all_forgets_what_the_listing_no_longer_has() -> None:
    store = SessionStore()
    store.update(indexed_session(1))
    store.replace_all([indexed_session(2, session_id="uid-2", name="other")])
    assert store.get(REF) is None
    assert store.by_id("uid-1") is None
    assert store.by_id("uid-2") is not None
    assert len(store) == 1


def test_resource_versions_compare_as_numbers_when_they_are() -> None:
    assert is_newer("10", "9")
    assert not is_newer("9", "10")
    assert not is_newer("abc", "1")
