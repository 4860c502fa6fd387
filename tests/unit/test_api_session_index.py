"""The API's Session index: by sessionID and by namespace/name, newest version wins."""

from __future__ import annotations

from typing import Any

from session_operator.api.session_index import SessionIndex, is_newer
from session_operator.models import Session, SessionRef

REF = SessionRef(namespace="media", name="living-room")


def make_session(version: int, session_id: str | None = "uid-1", name: str = REF.name) -> Session:
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
    index = SessionIndex()
    index.upsert(make_session(1, session_id=None))
    assert index.by_ref(REF) is not None
    assert index.by_id("uid-1") is None
    index.upsert(make_session(2))
    found = index.by_id("uid-1")
    assert found is not None
    assert found.resource_version == "2"


def test_older_version_never_replaces_a_newer_one() -> None:
    index = SessionIndex()
    index.upsert(make_session(5))
    index.upsert(make_session(4))
    index.refresh(make_session(3))
    found = index.by_ref(REF)
    assert found is not None
    assert found.resource_version == "5"


def test_refresh_does_not_bring_back_a_deleted_session() -> None:
    index = SessionIndex()
    index.upsert(make_session(1))
    index.remove(REF)
    index.refresh(make_session(2))
    assert index.by_ref(REF) is None
    assert index.by_id("uid-1") is None


def test_refresh_takes_a_newer_known_session() -> None:
    index = SessionIndex()
    index.upsert(make_session(1))
    index.refresh(make_session(2))
    found = index.by_ref(REF)
    assert found is not None
    assert found.resource_version == "2"


def test_replace_all_forgets_what_the_listing_no_longer_has() -> None:
    index = SessionIndex()
    index.upsert(make_session(1))
    index.replace_all([make_session(2, session_id="uid-2", name="other")])
    assert index.by_ref(REF) is None
    assert index.by_id("uid-1") is None
    assert index.by_id("uid-2") is not None
    assert len(index) == 1


def test_resource_versions_compare_as_numbers_when_they_are() -> None:
    assert is_newer("10", "9")
    assert not is_newer("9", "10")
    assert not is_newer("abc", "1")
