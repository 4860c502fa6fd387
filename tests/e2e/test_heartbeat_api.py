"""The heartbeat API (docs/API_CONTRACT.md) against the real apiserver, with real
ServiceAccount tokens."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from session_operator.timestamps import format_timestamp, parse_timestamp
from tests.e2e.conftest import (
    HEARTBEAT_AUDIENCE,
    Cluster,
    OperatorProcess,
    fresh_namespace,
    wait_for,
)
from tests.e2e.heartbeats import (
    Reply,
    call,
    create_token,
    heartbeat_path,
    ready_session,
    service_account,
)
from tests.e2e.sessions import create_session, event_reasons, read_session, wait_for_state

LONG_LEASE = {"lease": {"ttlSeconds": 120, "heartbeatIntervalSeconds": 2}}
SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
LIVE_STATES = {"new", "starting", "ready"}
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    """A second fresh namespace, deleted afterwards."""
    with fresh_namespace(cluster) as name:
        yield name


def patch_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge *status* into the Session's status subresource, as another writer would."""
    cluster.kubectl(
        "patch", "session", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def assert_problem(reply: Reply, status: int) -> None:
    """*reply* is an RFC 7807 problem with *status*, not cacheable."""
    assert reply.status == status, reply
    assert reply.headers["Content-Type"].startswith(PROBLEM_JSON), reply.headers
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.body["status"] == status
    assert reply.body["type"].startswith("https://xg2g.io/problems/")
    assert reply.body["title"]
    assert reply.body["detail"]


def test_heartbeat_without_a_valid_token_is_401(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ready_session(cluster, namespace, "s", LONG_LEASE)
    url = operator.url + heartbeat_path(namespace, "s")
    for reply in (
        call("POST", url),
        call("POST", url, "not-a-token"),
        call("POST", url, authorization="Basic dXNlcjpwYXNz"),
        call("GET", f"{operator.url}/api/v3/namespaces/{namespace}/sessions/s", "not-a-token"),
    ):
        assert_problem(reply, 401)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_service_account_without_a_binding_is_403(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    session_id = ready_session(cluster, namespace, "s", LONG_LEASE)
    token = service_account(cluster, namespace, "unbound")
    assert_problem(call("POST", operator.url + heartbeat_path(namespace, "s"), token), 403)
    assert_problem(
        call("POST", f"{operator.url}/api/v3/sessions/{session_id}/heartbeat", token), 403
    )
    # The namespace-scoped path checks access before existence: nothing to learn there.
    assert_problem(call("POST", operator.url + heartbeat_path(namespace, "nope"), token), 403)


def test_binding_in_another_namespace_is_403(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    other_namespace: str,
) -> None:
    session_id = ready_session(cluster, namespace, "s", LONG_LEASE)
    token = service_account(cluster, other_namespace, "player", bind_in=other_namespace)
    reply = call("POST", operator.url + heartbeat_path(namespace, "s"), token)
    assert_problem(reply, 403)
    assert f"system:serviceaccount:{other_namespace}:player" in reply.body["detail"]
    by_id = call("POST", f"{operator.url}/api/v3/sessions/{session_id}/heartbeat", token)
    assert_problem(by_id, 403)
    # Its own namespace it may beat: the refusal above is about the namespace, not the token.
    ready_session(cluster, other_namespace, "own", LONG_LEASE)
    assert call("POST", operator.url + heartbeat_path(other_namespace, "own"), token).status == 200


def test_bound_service_account_gets_200_with_the_body(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    session_id = ready_session(cluster, namespace, "s", LONG_LEASE)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    before = _heartbeat_count(operator, "extended")
    sent = datetime.now(UTC)

    reply = call("POST", operator.url + heartbeat_path(namespace, "s"), token)

    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-store"
    assert set(reply.body) == {
        "session_id",
        "acknowledged",
        "lease_expires_at",
        "heartbeat_interval",
        "seconds_left",
        "expiring_soon",
    }
    assert reply.body["session_id"] == session_id
    assert reply.body["acknowledged"] is True
    assert reply.body["heartbeat_interval"] == 2
    assert 119 < reply.body["seconds_left"] <= 120
    assert reply.body["expiring_soon"] is False
    expires = parse_timestamp(reply.body["lease_expires_at"])
    assert sent + timedelta(seconds=119) < expires < sent + timedelta(seconds=122)
    stored = read_session(cluster, namespace, "s")["status"]
    assert stored["leaseExpiresAt"] == reply.body["lease_expires_at"]
    assert sent - timedelta(seconds=1) < parse_timestamp(stored["lastHeartbeat"]) <= expires
    assert _heartbeat_count(operator, "extended") == before + 1

    read = call("GET", f"{operator.url}/api/v3/sessions/{session_id}", token)
    assert read.status == 200, read
    assert 0 < read.body["seconds_left"] <= reply.body["seconds_left"]
    assert _without_countdown(read.body) == {
        "session_id": session_id,
        "namespace": namespace,
        "name": "s",
        "state": "ready",
        "lease_expires_at": stored["leaseExpiresAt"],
        "heartbeat_interval": 2,
        "last_heartbeat": stored["lastHeartbeat"],
        "stop_reason": None,
        "expiring_soon": False,
    }
    by_name = call("GET", f"{operator.url}/api/v3/namespaces/{namespace}/sessions/s", token)
    assert _without_countdown(by_name.body) == _without_countdown(read.body)


def _without_countdown(body: dict[str, Any]) -> dict[str, Any]:
    """An answer without ``seconds_left``, which counts down between two answers."""
    return {key: value for key, value in body.items() if key != "seconds_left"}


def test_heartbeats_inside_the_interval_write_nothing_and_leases_only_move_forward(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    ready_session(
        cluster, namespace, "s", {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 2}}
    )
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    url = operator.url + heartbeat_path(namespace, "s")
    noops = _heartbeat_count(operator, "noop")

    first = call("POST", url, token)
    version = read_session(cluster, namespace, "s")["metadata"]["resourceVersion"]
    second = call("POST", url, token)

    assert (first.status, second.status) == (200, 200)
    assert _without_countdown(second.body) == _without_countdown(first.body)
    assert second.body["seconds_left"] <= first.body["seconds_left"]
    assert read_session(cluster, namespace, "s")["metadata"]["resourceVersion"] == version
    assert _heartbeat_count(operator, "noop") == noops + 1

    time.sleep(2.1)
    third = call("POST", url, token)
    assert third.status == 200, third
    assert parse_timestamp(third.body["lease_expires_at"]) > parse_timestamp(
        first.body["lease_expires_at"]
    )
    stored = read_session(cluster, namespace, "s")
    assert stored["metadata"]["resourceVersion"] != version
    assert stored["status"]["leaseExpiresAt"] == third.body["lease_expires_at"]

    # A longer lease granted meanwhile (the API's cache has not seen it yet) never shrinks.
    far = format_timestamp(datetime.now(UTC) + timedelta(hours=1))
    patch_status(cluster, namespace, "s", {"leaseExpiresAt": far})
    time.sleep(2.1)
    fourth = call("POST", url, token)
    assert fourth.status == 200, fourth
    assert fourth.body["lease_expires_at"] == far
    stored_status = read_session(cluster, namespace, "s")["status"]
    assert stored_status["leaseExpiresAt"] == far
    assert parse_timestamp(stored_status["lastHeartbeat"]) > parse_timestamp(
        third.body["lease_expires_at"]
    ) - timedelta(seconds=30)


@pytest.mark.parametrize(
    ("status", "reported"),
    [
        ({"state": "stopping", "stopReason": "USER_STOPPED"}, {"stopping", "stopped"}),
        ({"state": "stopped", "stopReason": "USER_STOPPED"}, {"stopped"}),
        ({"state": "failed", "stopReason": "FAILED"}, {"failed"}),
    ],
)
def test_heartbeat_on_an_ended_session_is_410_and_the_read_agrees(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
    status: dict[str, str],
    reported: set[str],
) -> None:
    session_id = ready_session(cluster, namespace, "s", LONG_LEASE)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    patch_status(cluster, namespace, "s", status)

    for path in (heartbeat_path(namespace, "s"), f"/api/v3/sessions/{session_id}/heartbeat"):
        reply = call("POST", operator.url + path, token)
        assert_problem(reply, 410)
        assert reply.body["session_id"] == session_id
        assert reply.body["state"] in reported
        assert reply.body["stop_reason"] == status["stopReason"]
        read = call("GET", f"{operator.url}/api/v3/sessions/{session_id}", token)
        assert read.status == 200
        assert read.body["state"] not in LIVE_STATES
    stored = read_session(cluster, namespace, "s")["status"]
    assert stored["state"] in reported, "a heartbeat must never revive a session"
    assert "lastHeartbeat" not in stored


def test_unknown_session_is_404(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    for method, path in (
        ("POST", heartbeat_path(namespace, "nope")),
        ("GET", f"/api/v3/namespaces/{namespace}/sessions/nope"),
        ("POST", f"/api/v3/sessions/{uuid.uuid4()}/heartbeat"),
        ("GET", f"/api/v3/sessions/{uuid.uuid4()}"),
    ):
        assert_problem(call(method, operator.url + path, token), 404)
    # A path parameter that can never name a session is a bad request, not a 500.
    assert_problem(call("POST", operator.url + heartbeat_path(namespace, "Not_A_Name"), token), 400)
    assert_problem(call("DELETE", operator.url + heartbeat_path(namespace, "nope"), token), 405)


def test_new_session_is_409_and_a_lapsed_one_410_before_the_operator_sees_them(
    cluster: Cluster,
    operator: OperatorProcess,
    heartbeat_api: OperatorProcess,
    heartbeat_role: str,
    namespace: str,
) -> None:
    token = service_account(
        cluster, namespace, "player", bind_in=namespace, audience=HEARTBEAT_AUDIENCE
    )
    api = heartbeat_api.url
    operator.stop()  # serve-api keeps answering: it is a process of its own
    try:
        create_session(cluster, namespace, "fresh", LONG_LEASE)
        for method, path in (
            ("POST", heartbeat_path(namespace, "fresh")),
            ("GET", f"/api/v3/namespaces/{namespace}/sessions/fresh"),
        ):
            reply = call(method, api + path, token)
            assert_problem(reply, 409)
            assert reply.headers["Retry-After"] == "1"

        # Initialised, then its lease ran out while no operator was there to stop it.
        create_session(cluster, namespace, "lapsed", SHORT_LEASE)
        uid = read_session(cluster, namespace, "lapsed")["metadata"]["uid"]
        lapsed_at = format_timestamp(datetime.now(UTC) - timedelta(seconds=1))
        patch_status(
            cluster,
            namespace,
            "lapsed",
            {
                "state": "ready",
                "sessionID": uid,
                "leaseTTLSeconds": 3,
                "heartbeatInterval": 1,
                "leaseExpiresAt": lapsed_at,
            },
        )
        assert wait_for(
            lambda: call("GET", f"{api}/api/v3/sessions/{uid}", token).status == 200, timeout=5
        )
        reply = call("POST", api + heartbeat_path(namespace, "lapsed"), token)
        assert_problem(reply, 410)
        assert (reply.body["state"], reply.body["stop_reason"]) == ("stopping", "LEASE_EXPIRED")
        read = call("GET", f"{api}/api/v3/sessions/{uid}", token)
        assert (read.body["state"], read.body["stop_reason"]) == ("stopping", "LEASE_EXPIRED")
        assert read_session(cluster, namespace, "lapsed")["status"]["leaseExpiresAt"] == lapsed_at
    finally:
        operator.start()
    wait_for_state(cluster, namespace, "lapsed", {"stopped"}, timeout=5)
    wait_for_state(cluster, namespace, "fresh", {"ready"}, timeout=5)
    assert call("POST", api + heartbeat_path(namespace, "fresh"), token).status == 200


def test_apiserver_outage_is_503_with_retry_after_and_recovers_by_itself(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    assert cluster.control_plane is not None, "needs the local control plane to pause"
    session_id = ready_session(
        cluster, namespace, "s", {"lease": {"ttlSeconds": 300, "heartbeatIntervalSeconds": 1}}
    )
    known = service_account(cluster, namespace, "player", bind_in=namespace)
    unseen = create_token(cluster, namespace, "player")
    url = operator.url + heartbeat_path(namespace, "s")
    assert call("POST", url, known).status == 200
    apiserver = cluster.control_plane.component("kube-apiserver")

    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        time.sleep(1.1)  # past the interval: this heartbeat needs a write
        replies = [
            call("POST", url, known),
            call("POST", url, unseen),
            call("POST", f"{operator.url}/api/v3/sessions/{uuid.uuid4()}/heartbeat", known),
            call("GET", f"{operator.url}/api/v3/namespaces/{namespace}/sessions/other", known),
        ]
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)

    for reply in replies:
        assert_problem(reply, 503)
        assert int(reply.headers["Retry-After"]) >= 1
        assert reply.seconds < 5, f"a stalled apiserver must be answered promptly: {reply}"
    assert wait_for(lambda: call("POST", url, unseen).status == 200, timeout=20)
    read = call("GET", f"{operator.url}/api/v3/sessions/{session_id}", known)
    assert read.status == 200
    assert read.body["state"] == "ready"


@dataclass(frozen=True)
class Attempt:
    """One heartbeat of the race: when it was sent and answered, and the answer."""

    sent: datetime
    answered: datetime
    status: int
    body: dict[str, Any]


async def test_heartbeats_racing_the_expiry_never_revive_and_never_lose_an_extension(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    rounds, sessions_per_round = 2, 8
    outcomes: dict[str, int] = {"extended": 0, "stopped": 0, "graced": 0}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for round_number in range(rounds):
            names = [f"race-{round_number}-{index}" for index in range(sessions_per_round)]
            for name in names:
                create_session(cluster, namespace, name, SHORT_LEASE)
            expiries = {}
            for name in names:
                body, _ = wait_for_state(cluster, namespace, name, {"ready"}, timeout=5)
                expiries[name] = parse_timestamp(body["status"]["leaseExpiresAt"])
                # Warm the auth cache, so that the race is about the write, not the review.
                path = f"/api/v3/namespaces/{namespace}/sessions/{name}"
                assert (await _request(http, "GET", operator.url + path))[0] == 200
            # Each session's burst starts a little later than the one before: from clearly
            # before the deadline (the heartbeat wins) to on it (the expiry wins).
            races = await asyncio.gather(
                *(
                    _race(
                        http,
                        operator.url + heartbeat_path(namespace, name),
                        expiries[name] + timedelta(milliseconds=-24 + 3 * index),
                    )
                    for index, name in enumerate(names)
                )
            )
            for name, attempts in zip(names, races, strict=True):
                final, _ = wait_for_state(cluster, namespace, name, {"stopped"}, timeout=10)
                graced = "LeaseGraceGranted" in event_reasons(cluster, namespace, name)
                extended = _check_race(name, expiries[name], attempts, final, graced=graced)
                outcomes["graced" if graced else "extended" if extended else "stopped"] += 1
    # The split between the outcomes varies with timing; the invariants above may not.
    print(f"race outcomes: {outcomes}")
    assert sum(outcomes.values()) == rounds * sessions_per_round, outcomes


async def _race(http: aiohttp.ClientSession, url: str, first: datetime) -> list[Attempt]:
    """Two heartbeats each at *first* and 2, 4 and 6 ms later."""
    return await asyncio.gather(
        *(
            _beat_at(http, url, first + timedelta(milliseconds=offset))
            for offset in (0, 2, 4, 6)
            for _ in range(2)
        )
    )


def _check_race(
    name: str,
    first_expiry: datetime,
    attempts: list[Attempt],
    final: dict[str, Any],
    *,
    graced: bool,
) -> bool:
    """The race's invariants for one session; whether a heartbeat won it. *graced*: the
    operator granted it a grace (lease rule 8) for an outage it saw, as a call that hangs
    past its deadline on a loaded machine is one."""
    status = final["status"]
    assert status["stopReason"] == "LEASE_EXPIRED", (name, status)
    stopped_at = parse_timestamp(status["stoppedAt"])
    final_expiry = parse_timestamp(status["leaseExpiresAt"])
    assert {a.status for a in attempts} <= {200, 410}, (name, attempts)
    acknowledged = [a for a in attempts if a.status == 200]
    for attempt in acknowledged:
        promised = parse_timestamp(attempt.body["lease_expires_at"])
        # An acknowledged lease is never granted once expired, and never cut short.
        assert promised > attempt.sent - timedelta(milliseconds=1), (name, attempt)
        assert stopped_at >= promised, (name, attempt, status)
        assert final_expiry >= promised, (name, attempt, status)
    if final_expiry > first_expiry and not graced:
        # Only a heartbeat sent before the lease ran out (or a grace) can have extended it.
        assert any(a.sent < first_expiry for a in acknowledged), (name, attempts, status)
    for refusal in (a for a in attempts if a.status == 410 and a.body["state"] != "stopping"):
        # Refused because the operator had stopped it: never acknowledged again after that.
        assert stopped_at <= refusal.answered, (name, refusal, status)
        assert all(a.sent < refusal.answered for a in acknowledged), (name, attempts)
    return final_expiry > first_expiry


async def _beat_at(http: aiohttp.ClientSession, url: str, at: datetime) -> Attempt:
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
    sent = datetime.now(UTC)
    status, body = await _request(http, "POST", url)
    return Attempt(sent, datetime.now(UTC), status, body)


async def _request(
    http: aiohttp.ClientSession, method: str, url: str
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url) as response:
        return response.status, await response.json(content_type=None)


def _heartbeat_count(operator: OperatorProcess, result: str) -> float:
    _, text = operator.get("/metrics")
    sample = f'xg2g_sessions_heartbeat_total{{result="{result}"}} '
    for line in text.splitlines():
        if line.startswith(sample):
            return float(line[len(sample) :])
    return 0.0


def session_lists(cluster: Cluster) -> float:
    """How many LISTs of Sessions the apiserver has served (its own request counter)."""
    metrics = cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "apiserver_request"
        for sample in family.samples
        if sample.name == "apiserver_request_total"
        and sample.labels.get("resource") == "sessions"
        and sample.labels.get("verb") == "LIST"
    )


def outage_records(cluster: Cluster) -> str:
    """Every outage ConfigMap's data, as one comparable string."""
    listed = cluster.kubectl("get", "configmaps", "-A", "-o", "json").stdout
    return json.dumps(
        [
            item.get("data")
            for item in json.loads(listed)["items"]
            if item["metadata"]["name"] == "session-lease-operator-outages"
        ],
        sort_keys=True,
    )


async def test_unknown_session_ids_cost_no_session_list_and_no_outage(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    token = service_account(cluster, namespace, "prober", bind_in=namespace)
    ready_session(cluster, namespace, "known", LONG_LEASE)  # the cache has synced
    lists_before, outages_before = session_lists(cluster), outage_records(cluster)

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def probe(number: int) -> int:
            url = f"{operator.url}/api/v3/sessions/no-such-{uuid.uuid4().hex}-{number}/heartbeat"
            async with http.post(url) as response:
                return response.status

        statuses = await asyncio.gather(*(probe(n) for n in range(1_000)))

    assert set(statuses) == {404}
    assert session_lists(cluster) == lists_before
    assert outage_records(cluster) == outages_before
