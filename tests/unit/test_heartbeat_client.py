"""The heartbeat client's pure parts: its paths and its backoff."""

from __future__ import annotations

import pytest

from session_operator.heartbeat_client import (
    Backoff,
    HeartbeatClient,
    HeartbeatFailed,
    InsecureUrl,
    heartbeat_path,
    next_beat_delay,
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
    spread = {round(next_beat_delay(5.0), 3) for _ in range(50)}
    assert len(spread) > 1
    assert all(5.0 <= delay < 5.5 for delay in spread)


def test_backoff_never_waits_less_than_retry_after() -> None:
    assert Backoff(first=0.5).delay(cap=1.0, retry_after=2.0) == 2.0


@pytest.mark.parametrize(
    ("status", "ended"),
    [(410, True), (404, True), (503, False), (409, False), (401, False), (None, False)],
)
def test_only_gone_and_not_found_end_the_session(status: int | None, ended: bool) -> None:
    assert HeartbeatFailed("refused", status).session_ended is ended


@pytest.mark.parametrize("url", ["http://api:8080", "HTTP://api:8080", " http://api:8080"])
def test_plain_http_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InsecureUrl, match="plain HTTP"):
        HeartbeatClient(url, "media/s")
    assert HeartbeatClient(url, "media/s", allow_http=True).session == "media/s"
    assert HeartbeatClient("https://api:8443", "media/s").session == "media/s"


@pytest.mark.parametrize("url", ["api:8443", "ftp://api", "//api:8443"])
def test_a_url_that_is_not_https_is_refused(url: str) -> None:
    with pytest.raises(InsecureUrl, match="must start with https://"):
        HeartbeatClient(url, "media/s", allow_http=True)
