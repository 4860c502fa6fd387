"""Events are recorded at once and posted in the background (k8s/events.py)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from session_operator.k8s.errors import ApiUnavailable
from session_operator.k8s.events import EventRecorder
from session_operator.models import Session
from tests.unit.builders import FakeRest, make_body, stop

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
SESSION = Session.from_body(make_body())


class SlowRest(FakeRest):
    """Answers every POST once *answering* is set."""

    def __init__(self) -> None:
        super().__init__([])
        self.answering = asyncio.Event()

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.requests.append((method, path, kwargs.get("body")))
        await self.answering.wait()
        return {}


async def posting(recorder: EventRecorder, posters: int = 1) -> asyncio.Task[None]:
    task = asyncio.create_task(recorder.run(posters))
    await asyncio.sleep(0)
    return task


async def test_recording_waits_for_no_write_and_the_event_is_posted_after() -> None:
    rest = SlowRest()
    recorder = EventRecorder(rest)
    recorder.record(SESSION, "LeaseExpired", "the lease ran out", NOW, warning=True)
    assert rest.requests == []
    assert recorder.waiting == 1
    task = await posting(recorder)
    await asyncio.sleep(0)
    [(method, path, body)] = rest.requests
    assert (method, path) == ("POST", "/apis/events.k8s.io/v1/namespaces/media/events")
    assert (body["reason"], body["type"], body["note"]) == (
        "LeaseExpired", "Warning", "the lease ran out",
    )  # fmt: skip
    assert body["regarding"]["uid"] == SESSION.uid
    await stop(task)


async def test_events_are_named_in_the_order_recorded_whatever_order_they_are_posted() -> None:
    rest = SlowRest()
    recorder = EventRecorder(rest)
    for reason in ("Initialised", "Ready", "LeaseExpired"):
        recorder.record(SESSION, reason, reason, NOW)
    task = await posting(recorder, posters=3)
    await asyncio.sleep(0)
    names = {body["reason"]: body["metadata"]["name"] for _, _, body in rest.requests}
    assert len(names) == 3
    assert names["Initialised"] < names["Ready"] < names["LeaseExpired"]
    assert all(name.startswith("living-room.") for name in names.values())
    await stop(task)


async def test_at_most_the_posters_post_at_once() -> None:
    rest = SlowRest()
    recorder = EventRecorder(rest)
    for index in range(5):
        recorder.record(SESSION, f"Step{index}", "", NOW)
    task = await posting(recorder, posters=2)
    await asyncio.sleep(0.01)
    assert len(rest.requests) == 2
    rest.answering.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(rest.requests) == 5
    assert recorder.waiting == 0
    await stop(task)


async def test_an_event_past_the_backlog_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = EventRecorder(SlowRest(), backlog=2)
    with caplog.at_level(logging.WARNING, logger="session_operator.k8s.events"):
        for reason in ("First", "Second", "Third"):
            recorder.record(SESSION, reason, "", NOW)
    assert recorder.waiting == 2
    assert caplog.messages == [
        "event Third for media/living-room dropped: 2 events wait to be posted"
    ]


async def test_an_event_the_apiserver_refuses_is_logged_and_the_next_is_posted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rest = FakeRest([ApiUnavailable("apiserver unreachable"), {}])
    recorder = EventRecorder(rest)
    recorder.record(SESSION, "First", "", NOW)
    recorder.record(SESSION, "Second", "", NOW)
    with caplog.at_level(logging.WARNING, logger="session_operator.k8s.events"):
        task = await posting(recorder)
        for _ in range(10):
            await asyncio.sleep(0)
    assert [body["reason"] for _, _, body in rest.requests] == ["First", "Second"]
    assert caplog.messages == [
        "could not post event First for media/living-room: apiserver unreachable"
    ]
    await stop(task)
