"""Finding the Session a request names: a sessionID is answered from the cache alone."""

from __future__ import annotations

import pytest

from session_operator.api.errors import CacheNotSynced, SessionNotFound
from session_operator.api.lookup import SessionLookup
from session_operator.informer.session_cache import SessionCache
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.sessions import SessionApi
from session_operator.k8s.watch import Listing
from session_operator.models import Session, SessionRef
from tests.unit.builders import ScriptedListWatch, listed_body, run_cache_until


class NoReads(SessionApi):
    """A SessionApi that fails the test if the lookup reads the apiserver."""

    def __init__(self) -> None:
        pass

    async def get(self, ref: SessionRef) -> Session | None:
        raise AssertionError(f"unexpected GET of {ref}")


def lookup_over(script: ScriptedListWatch) -> tuple[SessionLookup, SessionCache, SessionStore]:
    store = SessionStore()
    cache = SessionCache(script, store)
    return SessionLookup(store, NoReads(), namespace=None), cache, store


async def test_unknown_session_id_is_not_found_without_reading_the_apiserver() -> None:
    script = ScriptedListWatch([Listing([listed_body("a", 5, "id-a")], "10")], [])
    lookup, cache, store = lookup_over(script)
    await run_cache_until(cache, lambda: store.synced)
    assert lookup.by_id("id-a").ref == SessionRef(namespace="media", name="a")
    for _ in range(1_000):
        with pytest.raises(SessionNotFound):
            lookup.by_id("no-such-id")
    assert script.lists == 1


def test_session_id_before_the_cache_synced_is_not_ready_rather_than_not_found() -> None:
    lookup, _, _ = lookup_over(ScriptedListWatch([], []))
    with pytest.raises(CacheNotSynced):
        lookup.by_id("id-a")
