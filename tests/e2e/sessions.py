"""Helpers for e2e tests that create and watch Sessions through kubectl."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from session_operator.timestamps import parse_timestamp
from tests.e2e.conftest import Cluster, wait_for


def create_session(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any] | None = None
) -> None:
    """Apply a Session with *spec*."""
    body = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {},
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(body))


def read_session(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The Session as stored now."""
    output = cluster.kubectl("get", "session", name, "-n", namespace, "-o", "json").stdout
    body: dict[str, Any] = json.loads(output)
    return body


def wait_for_state(
    cluster: Cluster, namespace: str, name: str, states: set[str], timeout: float
) -> tuple[dict[str, Any], datetime]:
    """Poll until the Session's state is one of *states*; the object and when it was seen."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = read_session(cluster, namespace, name)
        if body.get("status", {}).get("state") in states:
            return body, datetime.now().astimezone()
        time.sleep(0.05)
    raise AssertionError(
        f"{namespace}/{name} not in {states} after {timeout}s: {body.get('status')}"
    )


def status_time(body: dict[str, Any], field: str) -> datetime:
    """A timestamp field of the Session's status, parsed."""
    return parse_timestamp(body["status"][field])


def forbid_pods(cluster: Cluster, namespace: str) -> None:
    """A ResourceQuota of zero Pods in *namespace*, in force once this returns."""
    cluster.kubectl("create", "quota", "no-pods", "--hard=pods=0", "-n", namespace)
    in_force = wait_for(
        lambda: (
            "pods"
            in cluster.kubectl(
                "get", "quota", "no-pods", "-n", namespace, "-o", "jsonpath={.status.hard}"
            ).stdout
        ),
        timeout=10,
    )
    assert in_force, "the quota controller never took up the ResourceQuota"


def pods_of(cluster: Cluster, namespace: str, session: str) -> list[str]:
    """Names of the Pods labelled for *session*."""
    output = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"xg2g.io/session={session}", "-o", "name"
    ).stdout
    return output.split()


EVENTS_SETTLED_SECONDS = 0.3
"""The operator posts Events in the background, a moment after the step they tell: they
are read until two reads this far apart agree."""


def session_events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events about Session *name*, oldest first, once none is still arriving."""
    events = _listed_events(cluster, namespace, name)
    for _ in range(10):
        time.sleep(EVENTS_SETTLED_SECONDS)
        again = _listed_events(cluster, namespace, name)
        if again == events:
            break
        events = again
    return events


def _listed_events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(
        cluster.kubectl(
            "get", "events.events.k8s.io", "-n", namespace, "-o", "json",
            "--field-selector", f"regarding.name={name}",
        ).stdout
    )["items"]  # fmt: skip
    return sorted(events, key=lambda event: event["metadata"]["name"])


def event_reasons(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """The Event reasons about Session *name*, oldest first."""
    return [event["reason"] for event in session_events(cluster, namespace, name)]
