"""The heartbeat client: its paths, its backoff, which answers end or stop its beating (against
a stand-in for the API)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from session_operator.heartbeat_client import (
    SESSION_NOT_FOUND_TYPE,
    Backoff,
    HeartbeatClient,
    HeartbeatFailed,
    InsecureUrl,
    UnusableUrl,
    heartbeat_path,
    next_beat_delay,
    retry_after_seconds,
)
from tests.stub_api import (
    Answer,
    acknowledgement,
    expiring_soon,
    in_turn,
    problem,
    stub_api,
)


def test_namespace_and_name_use_the_kubernetes_native_path() -> None:
    assert heartbeat_path("media/living-room") == (
        "/api/v3/namespaces/media/sessions/living-room/heartbeat"
    )


def test_anything_else_is_a_session_id() -> None:
    assert heartbeat_path("6f1c-uid") == "/api/v3/sessions/6f1c-uid/heartbeat"
    assert heartbeat_path("a b") == "/api/v3/sessions/a%20b/heartbeat"


def test_backoff_doubles_up_to_the_interval_and_restarts_after_a_success() -> None:
    backoff = Backoff(first=0.5)
    assert [backoff.delay(cap=3.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.delay(cap=3.0) == 0.5


def test_the_next_beat_waits_the_interval_plus_at_most_a_tenth_of_it() -> None:
    assert next_beat_delay(5.0, draw=lambda: 0.0) == 5.0
    assert next_beat_delay(5.0, draw=lambda: 0.5) == pytest.approx(5.25)
    assert next_beat_delay(5.0, draw=lambda: 0.999) < 5.5
    # The bounds hold for the delays themselves: rounded, 5.4999 would read 5.5.
    delays = [next_beat_delay(5.0) for _ in range(50)]
    assert len(set(delays)) > 1
    assert all(5.0 <= delay < 5.5 for delay in delays)


def test_backoff_never_waits_less_than_retry_after() -> None:
    assert Backoff(first=0.5).delay(cap=1.0, retry_after=2.0) == 2.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1", 1.0), (" 30 ", 30.0), (None, None), ("", None), ("-1", None),
     ("Wed, 21 Oct 2026 07:28:00 GMT", None)],
)  # fmt: skip
def test_retry_after_is_read_in_seconds_only(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


@pytest.mark.parametrize(
    ("status", "problem_type", "ended"),
    [
        (410, None, True),
        (404, SESSION_NOT_FOUND_TYPE, True),
        (404, "https://xg2g.io/problems/not-found", False),
        (404, None, False),
        (503, None, False),
        (409, None, False),
        (401, None, False),
        (None, None, False),
    ],
)
def test_only_gone_and_session_not_found_end_the_session(
    status: int | None, problem_type: str | None, ended: bool
) -> None:
    document = {"type": problem_type} if problem_type else None
    assert HeartbeatFailed("refused", status, document).session_ended is ended


@pytest.mark.parametrize(
    ("status", "transient"),
    [(None, True), (409, True), (429, True), (503, True), (500, True), (400, False), (404, False)],
)
def test_only_no_answer_409_429_and_5xx_are_worth_asking_again(
    status: int | None, transient: bool
) -> None:
    assert HeartbeatFailed("refused", status).transient is transient


@pytest.mark.parametrize("url", ["http://api:8080", "HTTP://api:8080", " http://api:8080"])
def test_plain_http_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InsecureUrl, match="plain HTTP"):
        HeartbeatClient(url, "media/s")
    assert HeartbeatClient(url, "media/s", allow_http=True).session == "media/s"
    assert HeartbeatClient("https://api:8443", "media/s").session == "media/s"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("api:8443", "write https://api:8443, or http://api:8443 with --allow-http"),
        ("//api:8443", "write https://api:8443, or http://api:8443 with --allow-http"),
        ("HTTPS:/api:8443", "write https://api:8443"),
        ("ftp://api", "must start with https:// or http://"),
        ("https://", "names no host"),
        ("https://api:0x1", "has a bad port"),
    ],
)
def test_a_url_that_cannot_be_used_says_how_to_write_it(url: str, says: str) -> None:
    with pytest.raises(UnusableUrl, match=re.escape(says)):
        HeartbeatClient(url, "media/s", allow_http=True)


async def test_a_token_given_as_it_is_is_not_tried_again_once_refused() -> None:
    with stub_api(lambda path, token: problem(401, "unauthenticated", "not valid")) as api:
        async with HeartbeatClient(api.url, "media/s", token="t", allow_http=True) as client:
            with pytest.raises(HeartbeatFailed, match=r"refused \(401\): not valid"):
                await asyncio.wait_for(client.keep_alive(), timeout=5)
    assert len(api.requests) == 1


async def test_a_token_file_refused_is_read_again_and_its_rotated_token_used(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("expired")

    def answer(path: str, authorization: str) -> Answer:
        if authorization == "Bearer expired":
            token_file.write_text("rotated")  # as the kubelet rotates a projected token
            return problem(401, "unauthenticated", "the bearer token is not valid")
        return problem(410, "session-gone", "stopped", state="stopped", stop_reason="USER_STOPPED")

    with stub_api(answer) as api:
        async with HeartbeatClient(
            api.url, "media/s", token_file=token_file, allow_http=True
        ) as client:
            ended = await asyncio.wait_for(client.keep_alive(), timeout=5)
    assert ended.status == 410
    assert ended.stop_reason == "USER_STOPPED"
    assert [token for _, token in api.requests] == ["Bearer expired", "Bearer rotated"]


GONE = problem(410, "session-gone", "stopped", state="stopped", stop_reason="LEASE_EXPIRED")
OUT_OF_THE_WINDOW = (
    200,
    acknowledgement(interval=0)[1] | {"seconds_left": 60.0, "expiring_soon": False},
)


async def test_expiring_soon_is_told_once_per_stay_in_the_warning_window() -> None:
    told: list[float] = []
    script = in_turn(
        OUT_OF_THE_WINDOW,
        expiring_soon(9.5),
        expiring_soon(8.5),
        OUT_OF_THE_WINDOW,
        expiring_soon(3.25),
        then=GONE,
    )
    with stub_api(script) as api:
        async with HeartbeatClient(api.url, "media/s", token="t", allow_http=True) as client:
            ended = await asyncio.wait_for(client.keep_alive(on_expiring_soon=told.append), 5)
    assert ended.status == 410
    assert told == [9.5, 3.25]


async def test_a_background_heartbeat_tells_expiring_soon_too() -> None:
    told: list[float] = []
    with stub_api(in_turn(expiring_soon(12.0), then=GONE)) as api:
        async with (
            HeartbeatClient(api.url, "media/s", token="t", allow_http=True) as client,
            client.in_background(on_expiring_soon=told.append) as heartbeat,
        ):
            ended = await asyncio.wait_for(heartbeat.wait(), 5)
    assert ended.status == 410
    assert told == [12.0]


async def test_an_operator_that_says_nothing_of_the_window_never_tells_expiring_soon() -> None:
    told: list[float] = []
    with stub_api(in_turn(acknowledgement(interval=0), then=GONE)) as api:
        async with HeartbeatClient(api.url, "media/s", token="t", allow_http=True) as client:
            await asyncio.wait_for(client.keep_alive(on_expiring_soon=told.append), 5)
    assert told == []
