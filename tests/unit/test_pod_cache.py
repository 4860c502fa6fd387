"""The workload Pods' watch: the apiserver selects them by label; a listing is handed
to the store whole, and only the Sessions whose Pods it changed are queued; reconciles
wait for the first listing rather than read each missing Pod."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from session_operator import heap
from session_operator.controller.pod_feed import PodFeed
from session_operator.informer.pod_cache import PodCache, pods_path
from session_operator.informer.pod_store import PodStore
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.watch import Listing, WatchEvent
from session_operator.models import SESSION_LABEL, SessionRef
from session_operator.runtime import watch_pods_once_sessions_listed
from session_operator.workload import PodSummary
from tests.unit.builders import ScriptedListWatch, run_cache_until

pytestmark = pytest.mark.unit


def pod_body(name: str, phase: str = "Pending", version: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "media",
            "resourceVersion": str(version),
            "labels": {SESSION_LABEL: name},
            "ownerReferences": [{"controller": True, "uid": f"uid-{name}"}],
        },
        "status": {"phase": phase},
    }


def summary(name: str, phase: str = "Pending") -> PodSummary:
    return PodSummary(
        session=SessionRef("media", name),
        name=name,
        controller_uid=f"uid-{name}",
        phase=phase,
        ready=False,
        message="",
    )


def test_the_pods_of_a_namespace_or_of_all() -> None:
    assert pods_path("media") == "/api/v1/namespaces/media/pods"
    assert pods_path(None) == "/api/v1/pods"


def test_a_listing_tells_which_sessions_it_changed() -> None:
    store = PodStore()
    assert store.replace_all([summary("a"), summary("b")]) == {
        SessionRef("media", "a"),
        SessionRef("media", "b"),
    }
    changed = store.replace_all([summary("a"), summary("b", "Running"), summary("c")])
    assert changed == {SessionRef("media", "b"), SessionRef("media", "c")}
    assert store.replace_all([summary("b", "Running")]) == {
        SessionRef("media", "a"),
        SessionRef("media", "c"),
    }
    assert store.get(SessionRef("media", "a"), "uid-a") is None
    assert store.get(SessionRef("media", "b"), "uid-b") == summary("b", "Running")


def test_an_event_that_changes_nothing_queues_nothing() -> None:
    queued: list[SessionRef] = []
    feed = PodFeed(PodStore(), queued.append)
    feed.update(summary("a"))
    feed.update(summary("a"))
    feed.update(summary("a", "Running"))
    feed.remove(summary("a", "Running"))
    assert queued == [SessionRef("media", "a")] * 3


async def test_the_watch_lists_then_follows_the_pods_into_the_store() -> None:
    not_a_workload = pod_body("other")
    not_a_workload["metadata"]["name"] = "other-7f9c"  # labelled, but not named after it
    script = ScriptedListWatch(
        listings=[Listing([pod_body("a"), pod_body("b"), not_a_workload], "10")],
        watches=[
            [
                WatchEvent("MODIFIED", pod_body("a", "Running", 11)),
                WatchEvent("DELETED", pod_body("b", "Pending", 12)),
            ]
        ],
    )
    store = PodStore()
    queued: list[SessionRef] = []
    cache = PodCache(script, PodFeed(store, queued.append))
    await run_cache_until(cache, lambda: len(queued) == 4)

    assert store.listed.is_set()
    assert store.get(SessionRef("media", "a"), "uid-a") == summary("a", "Running")
    assert store.get(SessionRef("media", "b"), "uid-b") is None
    assert store.get(SessionRef("media", "other"), "uid-other") is None
    assert sorted(queued[:2], key=str) == [SessionRef("media", "a"), SessionRef("media", "b")]
    assert queued[2:] == [SessionRef("media", "a"), SessionRef("media", "b")]
    assert script.watched_from == ["10"]


class StartsWatching(PodCache):
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def run(self) -> None:
        self.started.set()


async def test_the_pod_watch_starts_once_the_sessions_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen: list[str] = []
    monkeypatch.setattr(heap, "freeze", frozen.append)
    sessions, pods = SessionStore(), StartsWatching()
    watching = asyncio.create_task(watch_pods_once_sessions_listed(pods, sessions))
    await asyncio.sleep(0.05)
    assert not pods.started.is_set()  # the Session listing, which makes a replica ready, first

    sessions.mark_synced()
    await asyncio.wait_for(watching, 1)
    assert pods.started.is_set()
    assert frozen == ["the Session listing"]  # the listed Sessions, out of the collector's reach
