"""The hold of a Session on the real control plane (docs/lease-rules.md, Hold): the
documented ``kubectl patch`` lines set and clear it, a held session outlives its lease
without heartbeats and stops when the hold ends, heartbeats go on working meanwhile, and
no hold passes the end of the maximum lifetime."""

from __future__ import annotations

import shlex
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from session_operator.timestamps import format_timestamp, parse_timestamp
from tests.e2e.conftest import REPO, Cluster, OperatorProcess, wait_for
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.sessions import (
    create_session,
    event_reasons,
    read_session,
    status_time,
    wait_for_state,
)

SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
DOCUMENTED_UNTIL = "2026-12-06T18:00:00Z"
"""The time in the documented lines, replaced by one ahead of the test's clock."""


def documented_patch_lines() -> tuple[list[str], list[str]]:
    """The two ``kubectl patch session NAME`` lines of docs/lease-rules.md (set, clear),
    split as a shell splits them."""
    text = (REPO / "docs" / "lease-rules.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("kubectl patch session NAME")]
    set_line, clear_line = lines
    assert DOCUMENTED_UNTIL in set_line
    assert '{"spec":{"hold":null}}' in clear_line
    return shlex.split(set_line), shlex.split(clear_line)


def run_documented(
    cluster: Cluster, line: list[str], namespace: str, name: str, until: datetime | None = None
) -> None:
    """Run a documented line as written, for Session *name* and the time *until*."""
    when = until.strftime("%Y-%m-%dT%H:%M:%SZ") if until is not None else DOCUMENTED_UNTIL
    program, *args = (part.replace("NAME", name).replace(DOCUMENTED_UNTIL, when) for part in line)
    assert program == "kubectl"
    cluster.kubectl(*args, "-n", namespace)


def ahead(seconds: float) -> datetime:
    """A whole second at least *seconds* from now (the documented form has no fraction)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds + 1)).replace(microsecond=0)


def reasons(body: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in body["status"]["conditions"]}


def taken_up(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The Session once the operator has taken its hold up (``status.holdUntil``)."""
    found: dict[str, Any] = {}

    def has_hold() -> bool:
        found.update(read_session(cluster, namespace, name))
        return "holdUntil" in found.get("status", {})

    assert wait_for(has_hold, timeout=5), found.get("status")
    return found


def held_session(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], until: datetime
) -> dict[str, Any]:
    """A ready Session *name* held until *until* with the documented line; the Session
    once the operator has taken the hold up."""
    set_hold, _ = documented_patch_lines()
    create_session(cluster, namespace, name, spec)
    wait_for_state(cluster, namespace, name, {"ready"}, timeout=5)
    run_documented(cluster, set_hold, namespace, name, until)
    return taken_up(cluster, namespace, name)


def test_a_held_session_outlives_its_lease_and_stops_when_the_hold_ends(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    until = ahead(10)
    body = held_session(cluster, namespace, "held", SHORT_LEASE, until)
    assert status_time(body, "holdUntil") == until
    assert reasons(body)["LeaseValid"] == "Held"

    # Heartbeats still work during the hold, and the answer tells the hold's end.
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    reply = call("POST", operator.url + heartbeat_path(namespace, "held"), token)
    assert reply.status == 200, reply.body
    assert parse_timestamp(reply.body["lease_expires_at"]) == until
    granted = status_time(read_session(cluster, namespace, "held"), "leaseExpiresAt")
    assert granted < until - timedelta(seconds=1), "too slow to see the hold outlive the lease"

    # Past the lease that heartbeat granted, with no heartbeat since, the hold keeps it.
    time.sleep(max((granted - datetime.now(UTC)).total_seconds() + 0.5, 0))
    assert read_session(cluster, namespace, "held")["status"]["state"] == "ready"

    left = (until - datetime.now(UTC)).total_seconds()
    body, _ = wait_for_state(cluster, namespace, "held", {"stopped"}, timeout=left + 3)
    lag = status_time(body, "stoppedAt") - until
    assert timedelta(0) <= lag <= timedelta(seconds=1), f"stopped {lag} after the hold's end"
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    assert reasons(body) == {"Ready": "LeaseExpired", "LeaseValid": "LeaseExpired"}
    assert Counter(event_reasons(cluster, namespace, "held")) == Counter(
        ["Ready", "HoldSet", "LeaseExpired"]
    )


def test_the_documented_lines_set_and_clear_a_hold(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    _, clear_hold = documented_patch_lines()
    until = ahead(3600)
    body = held_session(cluster, namespace, "desk", SHORT_LEASE, until)
    assert status_time(body, "holdUntil") == until
    time.sleep(4)  # past the TTL: held
    assert read_session(cluster, namespace, "desk")["status"]["state"] == "ready"

    run_documented(cluster, clear_hold, namespace, "desk")
    # The lease heartbeats granted has long passed: cleared, the session stops at once.
    body, _ = wait_for_state(cluster, namespace, "desk", {"stopped"}, timeout=3)
    assert "hold" not in body["spec"]
    assert "holdUntil" not in body["status"]
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    assert Counter(event_reasons(cluster, namespace, "desk")) == Counter(
        ["Ready", "HoldSet", "HoldCleared", "LeaseExpired"]
    )


def test_a_hold_that_ends_inside_the_lease_is_told_and_removed(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    until = ahead(2)
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}
    held_session(cluster, namespace, "kept", {"lease": lease}, until)

    def hold_ended() -> bool:
        return "holdUntil" not in read_session(cluster, namespace, "kept")["status"]

    assert wait_for(hold_ended, timeout=6)
    body = read_session(cluster, namespace, "kept")
    assert body["status"]["state"] == "ready"
    assert reasons(body)["LeaseValid"] == "LeaseGranted"
    assert body["status"]["holdRequestedUntil"] == format_timestamp(until)
    assert Counter(event_reasons(cluster, namespace, "kept")) == Counter(
        ["Ready", "HoldSet", "HoldEnded"]
    )


def test_no_hold_passes_the_end_of_the_maximum_lifetime(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    lease = {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1, "maxLifetimeSeconds": 6}
    body = held_session(cluster, namespace, "capped", {"lease": lease}, ahead(3600))
    lifetime_ends = status_time(body, "lifetimeEndsAt")
    assert status_time(body, "holdUntil") == lifetime_ends
    lease_valid = next(c for c in body["status"]["conditions"] if c["type"] == "LeaseValid")
    assert "past the end of its maximum lifetime" in lease_valid["message"]

    body, _ = wait_for_state(cluster, namespace, "capped", {"stopped"}, timeout=8)
    lag = status_time(body, "stoppedAt") - lifetime_ends
    assert timedelta(0) <= lag <= timedelta(seconds=1), f"stopped {lag} after the end"
    assert reasons(body)["LeaseValid"] == "MaxLifetimeReached"


def test_a_hold_does_nothing_to_a_stopped_session(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    set_hold, _ = documented_patch_lines()
    create_session(cluster, namespace, "over", {"stop": True})
    wait_for_state(cluster, namespace, "over", {"stopped"}, timeout=5)
    run_documented(cluster, set_hold, namespace, "over", ahead(3600))
    time.sleep(2)
    body = read_session(cluster, namespace, "over")
    assert "holdUntil" not in body["status"]
    assert "HoldSet" not in event_reasons(cluster, namespace, "over")
