"""``kubectl session``'s pure output: ages, time left, the table in 80 columns, the
timeline and describe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_operator.kubectl_session import columns
from session_operator.kubectl_session.describe import describe
from session_operator.kubectl_session.durations import human_duration
from session_operator.kubectl_session.listing import session_table
from session_operator.kubectl_session.table import Column, render
from session_operator.kubectl_session.timeline import timeline

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
LONGEST_NAME = "a" * 63  # the CRD's limit
LONGEST_NAMESPACE = "n" * 63  # a DNS label's


def stamp(seconds_from_now: float) -> str:
    """An RFC 3339 instant *seconds_from_now* from NOW, as the status stores it."""
    instant = NOW + timedelta(seconds=seconds_from_now)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def session(
    name: str = "living-room",
    namespace: str = "media",
    *,
    spec: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0f6a",
            "creationTimestamp": stamp(-300).replace(".000Z", "Z"),
        },
        "spec": spec or {"stop": False},
        "status": status,
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (42.9, "42s"),  # cut, never rounded up: a lease is never shown longer than it is
        (119, "119s"),
        (120, "2m"),
        (190, "3m10s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (2 * 3600 + 5 * 60, "125m"),  # kubectl's too: two units again from 3h
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (6 * 86400 + 23 * 3600, "6d23h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
        (-5, "0s"),
    ],
)
def test_durations_read_like_kubectl_ages(seconds: float, shown: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == shown


def test_time_left_counts_down_to_the_lease_expiry() -> None:
    ready = session(state="ready", leaseExpiresAt=stamp(42.5))
    assert columns.time_left(ready, NOW) == "42s"
    assert columns.time_left(session(state="starting", leaseExpiresAt=stamp(190)), NOW) == "3m10s"


def test_a_live_session_at_its_expiry_instant_shows_expired() -> None:
    # The lease rules' one predicate: expired means now >= leaseExpiresAt.
    assert columns.time_left(session(state="ready", leaseExpiresAt=stamp(0)), NOW) == "expired"
    assert columns.time_left(session(state="new", leaseExpiresAt=stamp(-1)), NOW) == "expired"


def test_a_held_session_has_time_left_until_the_end_of_its_hold() -> None:
    held = session(state="ready", leaseExpiresAt=stamp(-30), holdUntil=stamp(190))
    assert columns.time_left(held, NOW) == "3m10s"
    beating = session(state="ready", leaseExpiresAt=stamp(42.5), holdUntil=stamp(10))
    assert columns.time_left(beating, NOW) == "42s"


@pytest.mark.parametrize("state", ["stopping", "stopped", "failed"])
def test_a_session_that_is_not_live_has_no_time_left(state: str) -> None:
    body = session(state=state, leaseExpiresAt=stamp(30), stopReason="USER_STOPPED")
    assert columns.time_left(body, NOW) == "-"


def test_a_session_without_a_status_yet_shows_dashes() -> None:
    body = {"metadata": {"name": "fresh", "namespace": "media"}, "spec": {}}
    assert columns.state(body) == "-"
    assert columns.time_left(body, NOW) == "-"
    assert columns.last_heartbeat_age(body, NOW) == "-"
    assert columns.reason(body) == "-"
    assert columns.limit(body, NOW) is None


def test_the_last_heartbeat_is_shown_as_an_age() -> None:
    body = session(state="ready", leaseExpiresAt=stamp(57), lastHeartbeat=stamp(-3))
    assert columns.last_heartbeat_age(body, NOW) == "3s"


def test_a_malformed_timestamp_shows_a_dash_not_an_error() -> None:
    body = session(state="ready", leaseExpiresAt="soon", lastHeartbeat=17)
    assert columns.time_left(body, NOW) == "-"
    assert columns.last_heartbeat_age(body, NOW) == "-"


def test_the_limit_is_absent_unless_a_hold_or_cap_is_set() -> None:
    assert columns.limit(session(state="ready", leaseExpiresAt=stamp(60)), NOW) is None


def test_a_hold_in_force_is_shown_before_the_cap() -> None:
    spec = {"lease": {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5, "maxLifetimeSeconds": 3600}}
    held = session(spec=spec, state="ready", leaseExpiresAt=stamp(60), holdUntil=stamp(190),
                   lifetimeEndsAt=stamp(3300))  # fmt: skip
    assert columns.limit(held, NOW) == "hold 3m10s"
    # The spec's request alone is not the hold in force: the operator may have cut it.
    in_spec = session(spec={"hold": {"until": stamp(42)}}, state="ready")
    assert columns.limit(in_spec, NOW) is None


def test_the_cap_counts_from_the_creation() -> None:
    spec = {"lease": {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5, "maxLifetimeSeconds": 3600}}
    body = session(spec=spec, state="ready", leaseExpiresAt=stamp(60), holdUntil=stamp(-1),
                   lifetimeEndsAt=stamp(3300))  # fmt: skip
    assert columns.limit(body, NOW) == "cap 55m"
    stopped = session(spec=spec, state="stopped", lifetimeEndsAt=stamp(3300))
    assert columns.limit(stopped, NOW) == "-"
    # The spec's request alone is not the cap in force: the operator may have cut it.
    assert columns.limit(session(spec=spec, state="ready"), NOW) is None


def test_columns_take_their_widest_cell_and_two_spaces_between() -> None:
    lines = render([Column("NAME"), Column("STATE")], [["living-room", "ready"]], None)
    assert lines == ["NAME         STATE", "living-room  ready"]


def test_a_shrinkable_column_is_cut_with_an_ellipsis_only_when_needed() -> None:
    header = [Column("NAME", shrinkable=True, floor=4), Column("STATE")]
    assert render(header, [["abcdefghij", "ready"]], 17) == [
        "NAME        STATE",
        "abcdefghij  ready",
    ]
    assert render(header, [["abcdefghij", "ready"]], 15) == ["NAME      STATE", "abcdefg…  ready"]


def widest_sessions() -> list[dict[str, Any]]:
    """Sessions that make every column as wide as it gets."""
    hold_until = stamp(2 * 365 * 86400 + 100 * 86400)
    return [
        session(LONGEST_NAME, LONGEST_NAMESPACE, state="starting",
                leaseExpiresAt=stamp(-1), lastHeartbeat=stamp(-7 * 86400)),
        session("short", "media", state="stopped", stopReason="LEASE_EXPIRED",
                leaseExpiresAt=stamp(-60), lastHeartbeat=stamp(-120)),
        session("held", "media", state="ready", leaseExpiresAt=stamp(-1), holdUntil=hold_until),
    ]  # fmt: skip


@pytest.mark.parametrize("all_namespaces", [False, True])
def test_the_table_of_the_longest_names_and_widest_cells_fits_80_columns(
    all_namespaces: bool,
) -> None:
    lines = session_table(
        widest_sessions(), NOW, all_namespaces=all_namespaces, wide=False, width=80
    )
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "HOLD/CAP" in lines[0]
    assert "hold 2y100d" in lines[3]
    assert "expired" in lines[1]
    assert "LEASE_EXPIRED" in lines[2]
    assert lines[1].startswith(("aaaaaa", "nnnnnn"))
    assert "…" in lines[1]
    assert lines[2].split() == [
        *(["media"] if all_namespaces else []), "short", "stopped", "-", "2m", "LEASE_EXPIRED", "-",
    ]  # fmt: skip


def test_a_name_is_cut_only_when_the_line_would_be_wider_than_80() -> None:
    # The other columns take 37 characters here: a name of 43 fits exactly.
    def table(name: str) -> list[str]:
        body = session(name, state="ready", leaseExpiresAt=stamp(42))
        return session_table([body], NOW, all_namespaces=False, wide=False, width=80)

    assert table("b" * 43) == [
        "NAME" + " " * 41 + "STATE  TIME LEFT  LAST BEAT  REASON",
        "b" * 43 + "  ready  42s        -          -",
    ]
    assert table("b" * 44)[1] == "b" * 42 + "…  ready  42s        -          -"


def test_a_wider_terminal_shows_the_whole_name() -> None:
    lines = session_table(widest_sessions(), NOW, all_namespaces=True, wide=False, width=200)
    assert LONGEST_NAME in lines[1]
    assert LONGEST_NAMESPACE in lines[1]


def test_the_wide_table_adds_the_instants_and_cuts_nothing() -> None:
    lines = session_table(widest_sessions(), NOW, all_namespaces=True, wide=True, width=80)
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "STATE", "TIME", "LEFT", "EXPIRES", "LAST", "HEARTBEAT", "REASON",
        "HOLD/CAP", "AGE",
    ]  # fmt: skip
    assert LONGEST_NAME in lines[1]
    assert stamp(-1) in lines[1]


def test_the_timeline_is_oldest_first_across_conditions_and_events() -> None:
    body = session(
        state="stopped",
        conditions=[
            {"type": "Ready", "status": "False", "reason": "LeaseExpired",
             "message": "stopped", "lastTransitionTime": stamp(-10).replace(".000Z", "Z")},
            {"type": "LeaseValid", "status": "True", "reason": "LeaseGranted",
             "message": "", "lastTransitionTime": stamp(-299).replace(".000Z", "Z")},
        ],
    )  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "Warning", "reason": "LeaseExpired", "message": "no heartbeat",
         "eventTime": "2026-11-23T09:59:50.500000Z"},
        {"type": "Normal", "reason": "Ready", "message": "ready", "eventTime": None,
         "firstTimestamp": stamp(-298).replace(".000Z", "Z")},
        {"type": "Normal", "reason": "Unplaced", "metadata": {}},
    ]  # fmt: skip
    entries = timeline(body, events)
    assert [(entry.source, entry.what, entry.reason) for entry in entries] == [
        ("session", "created", "-"),
        ("condition", "LeaseValid=True", "LeaseGranted"),
        ("event", "Normal", "Ready"),
        ("condition", "Ready=False", "LeaseExpired"),
        ("event", "Warning", "LeaseExpired"),
    ]


def test_a_live_lease_ends_the_timeline_with_its_expiry_ahead() -> None:
    body = session(state="ready", leaseExpiresAt=stamp(42), lastHeartbeat=stamp(-18))
    events: list[dict[str, Any]] = [
        {"type": "Normal", "reason": "Ready", "message": "ready", "eventTime": stamp(-299)}
    ]
    entries = timeline(body, events)
    assert [(entry.source, entry.what) for entry in entries] == [
        ("session", "created"),
        ("event", "Normal"),
        ("lease", "heartbeat"),
        ("lease", "expiry"),
    ]
    lines = describe(body, entries, NOW, 80)
    assert lines[-2].split()[:3] == ["18s", "lease", "heartbeat"]
    assert lines[-1].split()[:4] == ["in", "42s", "lease", "expiry"]


def test_a_held_session_shows_its_hold_and_its_expiry_at_the_hold_s_end() -> None:
    body = session(state="ready", leaseExpiresAt=stamp(-30), holdUntil=stamp(600),
                   lastHeartbeat=stamp(-90))  # fmt: skip
    entries = timeline(body, [])
    assert [(entry.what, entry.at) for entry in entries[-2:]] == [
        ("hold end", NOW + timedelta(seconds=600)),
        ("expiry", NOW + timedelta(seconds=600)),
    ]
    lines = describe(body, entries, NOW, 80)
    assert f"Held until:     {stamp(600)}" in lines
    assert "Time left:      10m" in lines
    assert "Hold/cap:       hold 10m" in lines


def test_a_stopped_lease_has_no_expiry_ahead() -> None:
    body = session(state="stopped", stopReason="LEASE_EXPIRED", leaseExpiresAt=stamp(-60))
    assert [entry.what for entry in timeline(body, [])] == ["created"]


def test_a_repeated_event_says_how_often() -> None:
    events = [{"type": "Warning", "reason": "Retry", "message": "again", "count": 3,
               "firstTimestamp": stamp(-60), "lastTimestamp": stamp(-5)}]  # fmt: skip
    (entry,) = timeline({"metadata": {}}, events)
    assert entry.message == f"again (3 times, last at {stamp(-5)})"


def test_describe_wraps_long_messages_inside_80_columns() -> None:
    body = session(
        state="ready", sessionID="0f6a", leaseExpiresAt=stamp(42), lastHeartbeat=stamp(-3),
        leaseTTLSeconds=60, heartbeatInterval=5,
    )  # fmt: skip
    events = [
        {"type": "Normal", "reason": "Ready", "message": "word " * 40, "eventTime": stamp(-1)}
    ]
    lines = describe(body, timeline(body, events), NOW, 80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "Time left:      42s" in lines
    assert "Last heartbeat: 3s ago (" + stamp(-3) + ")" in lines
    assert "Lease:          60s, a heartbeat every 5s" in lines
    assert lines[lines.index("Timeline:") + 1].split() == [
        "AGE",
        "FROM",
        "WHAT",
        "REASON",
        "MESSAGE",
    ]
    assert sum("word" in line for line in lines) > 3
