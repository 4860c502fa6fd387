"""The one watch of Sessions: LIST, then WATCH from the listed version, LIST again on 410
Gone; what it sees goes to a sink (here a bare store)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from session_operator.informer.session_cache import SessionCache
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.errors import ApiUnavailable, ResourceVersionExpired
from session_operator.k8s.watch import Listing, WatchEvent
from session_operator.models import SessionRef
from tests.unit.builders import ScriptedListWatch, listed_body, run_cache_until


async def test_cache_lists_then_applies_watch_events_and_relists_on_410() -> None:
    script = ScriptedListWatch(
        listings=[
            Listing([listed_body("a", 5, "id-a")], "10"),
            Listing([listed_body("b", 12, "id-b")], "20"),
        ],
        watches=[
            [
                WatchEvent("ADDED", listed_body("b", 11)),
                WatchEvent("MODIFIED", listed_body("b", 12, "id-b")),
                WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
                ResourceVersionExpired("too old"),
            ],
            [WatchEvent("DELETED", listed_body("b", 21, "id-b"))],
        ],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    assert not store.synced
    await run_cache_until(
        cache, lambda: len(script.watched_from) == 2 and store.by_id("id-b") is None
    )

    assert store.synced
    assert script.lists == 2
    assert script.watched_from == ["10", "20"]
    assert store.get(SessionRef(namespace="media", name="a")) is None  # gone from the LIST
    assert store.by_id("id-a") is None


def end_of_initial_events(version: str) -> WatchEvent:
    return WatchEvent(
        "BOOKMARK",
        {"metadata": {"resourceVersion": version,
                      "annotations": {"k8s.io/initial-events-end": "true"}}},
    )  # fmt: skip


async def test_a_streaming_list_is_handed_over_whole_at_its_bookmark_then_watched() -> None:
    script = ScriptedListWatch(
        listings=[],
        watches=[[WatchEvent("DELETED", listed_body("a", 31, "id-a"))]],
        streams=[
            [
                WatchEvent("ADDED", listed_body("a", 5, "id-a")),
                WatchEvent("ADDED", listed_body("b", 6, "id-b")),
                WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "7"}}),  # not the end
                end_of_initial_events("20"),
                WatchEvent("MODIFIED", listed_body("b", 25, "id-b")),
            ]
        ],
    )
    store = SessionStore()
    seen: list[int] = []
    store_replace_all = store.replace_all

    def replace_all(sessions: Any) -> None:
        sessions = list(sessions)
        seen.append(len(sessions))
        assert not store.synced  # synced only with the whole list
        store_replace_all(sessions)

    store.replace_all = replace_all  # type: ignore[method-assign]
    cache = SessionCache(script, store)
    await run_cache_until(cache, lambda: store.by_id("id-a") is None and store.synced)

    assert seen == [2]
    assert script.lists == 0
    # The stream ended after the MODIFIED: the watch resumes from its version, no new list.
    assert script.watched_from == ["25"]
    stored = store.by_id("id-b")
    assert stored is not None
    assert stored.resource_version == "25"


async def test_a_streaming_list_that_ends_before_its_bookmark_is_not_synced() -> None:
    script = ScriptedListWatch(
        listings=[],
        watches=[],
        streams=[
            [WatchEvent("ADDED", listed_body("a", 5, "id-a"))],  # the server ended it early
            [WatchEvent("ADDED", listed_body("b", 6, "id-b")), end_of_initial_events("9")],
        ],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    await run_cache_until(cache, lambda: store.synced)

    assert script.stream_lists == 2
    assert store.by_id("id-a") is None  # never handed over: the list it came in was not whole
    assert store.by_id("id-b") is not None


async def test_an_apiserver_that_cannot_stream_lists_is_listed_in_pages_from_then_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = ScriptedListWatch(
        listings=[Listing([listed_body("a", 5, "id-a")], "10"), Listing([], "20")],
        watches=[[ResourceVersionExpired("too old")]],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    with caplog.at_level(logging.INFO, logger="session_operator.informer.reflector"):
        await run_cache_until(cache, lambda: script.lists == 2)

    assert script.stream_lists == 1  # refused once, never asked again
    assert [r.getMessage() for r in caplog.records] == [
        "sessions watch: the apiserver does not stream lists "
        "(400: sendInitialEvents is forbidden for watch); listing in pages"
    ]


async def test_cache_resumes_the_watch_after_an_outage_without_listing_again() -> None:
    script = ScriptedListWatch(
        listings=[Listing([], "10")],
        watches=[
            [WatchEvent("ADDED", listed_body("a", 11, "id-a")), ApiUnavailable("connection reset")],
            [WatchEvent("MODIFIED", listed_body("a", 12, "id-a"))],
        ],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    await run_cache_until(
        cache,
        lambda: (found := store.by_id("id-a")) is not None and found.resource_version == "12",
    )
    assert script.lists == 1
    assert script.watched_from == ["10", "11"]


async def test_object_the_model_cannot_read_is_skipped_not_fatal() -> None:
    broken = listed_body("x", 11)
    del broken["metadata"]["uid"]
    garbled = listed_body("y", 12)
    garbled["metadata"]["creationTimestamp"] = "yesterday"
    script = ScriptedListWatch(
        listings=[Listing([broken, listed_body("a", 5, "id-a")], "10")],
        watches=[
            [
                WatchEvent("ADDED", broken),
                WatchEvent("ADDED", garbled),
                WatchEvent("ADDED", listed_body("b", 13, "id-b")),
            ]
        ],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    await run_cache_until(cache, lambda: store.by_id("id-b") is not None)
    assert store.by_id("id-a") is not None


async def test_an_unexpected_failure_of_the_watch_lists_again_rather_than_ending_it(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("session_operator.informer.reflector.RETRY_FIRST_SECONDS", 0.01)
    script = ScriptedListWatch(
        listings=[Listing([], "10"), Listing([listed_body("a", 30, "id-a")], "30")],
        watches=[[RuntimeError("a payload the client could not read")]],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    await run_cache_until(cache, lambda: store.by_id("id-a") is not None)
    assert script.lists == 2
    assert script.watched_from == ["10", "30"]


def refused() -> ApiUnavailable:
    """What a call raises when nothing listens at the apiserver's address."""
    key = ConnectionKey(
        host="10.96.0.1",
        port=443,
        is_ssl=True,
        ssl=True,
        proxy=None,
        proxy_auth=None,
        proxy_headers_hash=None,
        server_hostname=None,
    )
    os_error = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.96.0.1', 443)")
    cause = aiohttp.ClientConnectorError(key, os_error)
    error = ApiUnavailable(f"apiserver unreachable: {cause!r}")
    error.__cause__ = cause
    return error


@pytest.fixture
def cache_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Callable[[], list[tuple[int, str]]]:
    """Retries within milliseconds; what the cache has logged, as (level, message)."""
    monkeypatch.setattr("session_operator.informer.reflector.RETRY_FIRST_SECONDS", 0.001)
    caplog.set_level(logging.DEBUG, logger="session_operator.informer.reflector")
    return lambda: [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == "session_operator.informer.reflector"
    ]


async def test_an_unreachable_apiserver_is_told_once_in_short_then_at_debug_until_it_answers(
    cache_log: Callable[[], list[tuple[int, str]]],
) -> None:
    script = ScriptedListWatch(
        listings=[],
        watches=[],
        streams=[[refused()], [refused()], [refused()], [end_of_initial_events("10")]],
    )
    store = SessionStore()
    await run_cache_until(SessionCache(script, store), lambda: store.synced)

    told = cache_log()
    reason = "sessions watch: cannot reach the apiserver at 10.96.0.1:443: connection refused"
    assert told[:3] == [
        (logging.WARNING, f"{reason}; retrying in 1ms"),
        (logging.DEBUG, f"{reason}; retrying in 2ms"),
        (logging.DEBUG, f"{reason}; retrying in 4ms"),
    ]
    assert told[3][0] == logging.INFO
    assert told[3][1].startswith("sessions watch: the apiserver answers again, after ")
    assert len(told) == 4


async def test_each_outage_is_told_at_warning_and_its_end_at_info(
    cache_log: Callable[[], list[tuple[int, str]]],
) -> None:
    script = ScriptedListWatch(
        listings=[],
        watches=[[refused()], [WatchEvent("ADDED", listed_body("a", 11, "id-a"))]],
        streams=[[refused()], [end_of_initial_events("10")]],
    )
    store = SessionStore()
    await run_cache_until(SessionCache(script, store), lambda: store.by_id("id-a") is not None)

    assert [level for level, _ in cache_log()] == [
        logging.WARNING,  # the streaming list failed
        logging.INFO,  # it answered
        logging.WARNING,  # the watch failed
        logging.INFO,  # the resumed watch sent an event
    ]
    assert script.watched_from == ["10", "10"]
