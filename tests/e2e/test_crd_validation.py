"""The Session CRD refuses bad objects in the apiserver itself (docs/lease-rules.md).

No operator runs here: every spec and status write comes from the test through kubectl, so
each test shows what the apiserver alone accepts and refuses, and with which message.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from harness import Kubectl
from session_operator.lease import SessionState, can_transition

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "sessions.xg2g.io.yaml"
STOP_STATES = {SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED}
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "player"}},
    "spec": {"containers": [{"name": "player", "image": "registry.example/player:1.0"}]},
}


class ClusterWithKubectl(Protocol):
    """What these tests use of the ``cluster`` fixture."""

    @property
    def kubectl(self) -> Kubectl: ...


Result = subprocess.CompletedProcess[str]


# -- helpers ------------------------------------------------------------------------------


def session_manifest(name: str, namespace: str, spec: Mapping[str, Any] | None = None) -> str:
    """A Session manifest (JSON, which kubectl reads as YAML); no ``spec`` if *spec* is None."""
    body: dict[str, Any] = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "namespace": namespace},
    }
    if spec is not None:
        body["spec"] = dict(spec)
    return json.dumps(body)


def apply_session(
    cluster: ClusterWithKubectl,
    namespace: str,
    name: str,
    spec: Mapping[str, Any] | None = None,
    check: bool = True,
) -> Result:
    """Server-side apply a Session, as a GitOps tool or ``kubectl apply --server-side`` does."""
    manifest = session_manifest(name, namespace, spec)
    return cluster.kubectl("apply", "--server-side", "-f", "-", input_text=manifest, check=check)


def patch_spec(
    cluster: ClusterWithKubectl, namespace: str, name: str, patch: Mapping[str, Any]
) -> Result:
    """A merge patch of the main resource (spec); never raises, so a refusal can be inspected."""
    args = ["patch", "session", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch)]
    return cluster.kubectl(*args, check=False)


def patch_status(
    cluster: ClusterWithKubectl,
    namespace: str,
    name: str,
    status: Mapping[str, Any] | None,
    check: bool = True,
) -> Result:
    """A merge patch of ``/status``, what the operator writes; ``None`` removes status."""
    args = ["patch", "session", name, "-n", namespace, "--subresource=status", "--type=merge"]
    return cluster.kubectl(*args, "-p", json.dumps({"status": status}), check=check)


def get_session(cluster: ClusterWithKubectl, namespace: str, name: str) -> dict[str, Any]:
    """The stored Session."""
    result = cluster.kubectl("get", "session", name, "-n", namespace, "-o", "json")
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def status_in(state: SessionState, reason: str | None = None) -> dict[str, str]:
    """A minimal status in *state*; stop states carry the stopReason they require.

    The reason defaults to the one the operator would write: ``FAILED`` for ``failed``,
    ``USER_STOPPED`` otherwise.
    """
    if state not in STOP_STATES:
        return {"state": state.value}
    default = "FAILED" if state is SessionState.FAILED else "USER_STOPPED"
    return {"state": state.value, "stopReason": reason or default}


def assert_refused(result: Result, *fragments: str) -> None:
    """The apiserver refused the write, with a message containing every fragment."""
    assert result.returncode != 0, f"accepted, expected a refusal: {result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in: {result.stderr}"


def rfc3339(moment: datetime) -> str:
    """RFC 3339, UTC, milliseconds: how the operator writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- spec: accepted -----------------------------------------------------------------------


def test_session_without_lease_is_accepted_and_stop_defaults_to_false(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "no-lease")

    spec = get_session(cluster, namespace, "no-lease")["spec"]

    assert spec == {"stop": False}


def test_session_with_lease_and_template_is_accepted(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}
    apply_session(cluster, namespace, "leased", {"lease": lease, "template": POD_TEMPLATE})

    spec = get_session(cluster, namespace, "leased")["spec"]

    assert spec == {"lease": lease, "stop": False, "template": POD_TEMPLATE}


def test_ttl_of_exactly_three_heartbeat_intervals_is_accepted(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 15, "heartbeatIntervalSeconds": 5}

    result = apply_session(cluster, namespace, "tight", {"lease": lease}, check=False)

    assert result.returncode == 0, result.stderr


# -- spec: refused on create --------------------------------------------------------------


def test_negative_ttl_is_refused(cluster: ClusterWithKubectl, namespace: str) -> None:
    lease = {"ttlSeconds": -60, "heartbeatIntervalSeconds": 5}

    result = apply_session(cluster, namespace, "negative", {"lease": lease}, check=False)

    assert_refused(result, "spec.lease.ttlSeconds", "should be greater than or equal to 3")


def test_ttl_below_three_heartbeat_intervals_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 10, "heartbeatIntervalSeconds": 5}

    result = apply_session(cluster, namespace, "short", {"lease": lease}, check=False)

    assert_refused(
        result, "spec.lease.ttlSeconds must be at least 3 times heartbeatIntervalSeconds"
    )


@pytest.mark.parametrize(
    ("lease", "missing"),
    [
        ({"ttlSeconds": 60}, "heartbeatIntervalSeconds is missing"),
        ({"heartbeatIntervalSeconds": 5}, "ttlSeconds is missing"),
    ],
    ids=["ttl-only", "interval-only"],
)
def test_lease_with_only_one_of_its_two_fields_is_refused(
    cluster: ClusterWithKubectl, namespace: str, lease: dict[str, int], missing: str
) -> None:
    result = apply_session(cluster, namespace, "half", {"lease": lease}, check=False)

    assert_refused(result, "spec.lease needs both ttlSeconds and heartbeatIntervalSeconds", missing)
    assert "<nil>" not in result.stderr  # one sentence, no note about skipped rules


def test_name_of_63_characters_is_accepted(cluster: ClusterWithKubectl, namespace: str) -> None:
    result = apply_session(cluster, namespace, "n" * 63, check=False)

    assert result.returncode == 0, result.stderr


def test_name_of_64_characters_is_refused(cluster: ClusterWithKubectl, namespace: str) -> None:
    result = apply_session(cluster, namespace, "n" * 64, check=False)

    assert_refused(result, "metadata.name must be at most 63 characters")


# -- spec: refused on update --------------------------------------------------------------


def test_changing_lease_is_refused(cluster: ClusterWithKubectl, namespace: str) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}
    apply_session(cluster, namespace, "fixed", {"lease": lease})

    result = patch_spec(cluster, namespace, "fixed", {"spec": {"lease": {"ttlSeconds": 120}}})

    assert_refused(result, "spec.lease is immutable")
    assert get_session(cluster, namespace, "fixed")["spec"]["lease"] == lease


def test_adding_lease_after_creation_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "bare")
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}

    result = patch_spec(cluster, namespace, "bare", {"spec": {"lease": lease}})

    assert_refused(result, "spec.lease cannot be added or removed after the Session is created")


def test_removing_lease_after_creation_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}
    apply_session(cluster, namespace, "leased", {"lease": lease})

    result = patch_spec(cluster, namespace, "leased", {"spec": {"lease": None}})

    assert_refused(result, "spec.lease cannot be added or removed after the Session is created")


@pytest.mark.parametrize(
    "template_patch",
    [
        {"spec": {"containers": [{"name": "player", "image": "registry.example/player:2.0"}]}},
        {"metadata": {"labels": {"app": "recorder"}}},
        # Same number of keys, a different key: CEL equality on free-form objects skips keys
        # missing on one side, so this proves the schema compares every key.
        {"spec": {"containers": None, "volumes": [{"name": "cache", "emptyDir": {}}]}},
    ],
    ids=["image", "labels", "key-swapped"],
)
def test_changing_template_is_refused(
    cluster: ClusterWithKubectl, namespace: str, template_patch: dict[str, Any]
) -> None:
    apply_session(cluster, namespace, "workload", {"template": POD_TEMPLATE})

    result = patch_spec(cluster, namespace, "workload", {"spec": {"template": template_patch}})

    assert_refused(result, "spec.template is immutable")
    assert get_session(cluster, namespace, "workload")["spec"]["template"] == POD_TEMPLATE


def test_adding_template_after_creation_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "bare")

    result = patch_spec(cluster, namespace, "bare", {"spec": {"template": POD_TEMPLATE}})

    assert_refused(result, "spec.template cannot be added or removed after the Session is created")


def test_removing_template_after_creation_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "workload", {"template": POD_TEMPLATE})

    result = patch_spec(cluster, namespace, "workload", {"spec": {"template": None}})

    assert_refused(result, "spec.template cannot be added or removed after the Session is created")


def test_setting_stop_to_true_is_accepted(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "stoppable")

    result = patch_spec(cluster, namespace, "stoppable", {"spec": {"stop": True}})

    assert result.returncode == 0, result.stderr
    assert get_session(cluster, namespace, "stoppable")["spec"]["stop"] is True


def test_stop_cannot_be_set_back_to_false(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "stopped", {"stop": True})

    result = patch_spec(cluster, namespace, "stopped", {"spec": {"stop": False}})

    assert_refused(result, "spec.stop cannot be unset")


def test_stop_cannot_be_unset_by_reapplying_the_object_without_it(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}
    apply_session(cluster, namespace, "gitops", {"lease": lease})
    apply_session(cluster, namespace, "gitops", {"lease": lease, "stop": True})

    result = apply_session(cluster, namespace, "gitops", {"lease": lease}, check=False)

    assert_refused(result, "spec.stop cannot be unset")
    assert get_session(cluster, namespace, "gitops")["spec"]["stop"] is True


# -- status writes ------------------------------------------------------------------------


def test_status_without_state_is_refused(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "s")

    result = patch_status(cluster, namespace, "s", {"sessionID": "abc"}, check=False)

    assert_refused(result, "status.state: Required value")


def test_unknown_stop_reason_is_refused(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "s")

    result = patch_status(
        cluster, namespace, "s", {"state": "stopped", "stopReason": "BORED"}, check=False
    )

    assert_refused(result, "status.stopReason", 'Unsupported value: "BORED"')


def test_stop_state_without_stop_reason_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "ready"})

    result = patch_status(cluster, namespace, "s", {"state": "stopping"}, check=False)

    assert_refused(result, "status.stopReason is required when status.state is stopping")


@pytest.mark.parametrize("terminal", [SessionState.STOPPED, SessionState.FAILED])
def test_terminal_session_cannot_become_live_again(
    cluster: ClusterWithKubectl, namespace: str, terminal: SessionState
) -> None:
    apply_session(cluster, namespace, "done")
    patch_status(cluster, namespace, "done", status_in(terminal))

    result = patch_status(cluster, namespace, "done", {"state": "ready"}, check=False)

    assert_refused(result, "stopped and failed are terminal")
    assert get_session(cluster, namespace, "done")["status"]["state"] == terminal.value


def test_second_different_stop_reason_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "stopping", "stopReason": "USER_STOPPED"})

    result = patch_status(cluster, namespace, "s", {"stopReason": "LEASE_EXPIRED"}, check=False)

    assert_refused(result, "status.stopReason is set once")
    assert get_session(cluster, namespace, "s")["status"]["stopReason"] == "USER_STOPPED"


@pytest.mark.parametrize("change", ["another-id", None])
def test_session_id_cannot_be_changed_or_removed(
    cluster: ClusterWithKubectl, namespace: str, change: str | None
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "new", "sessionID": "first-id"})

    result = patch_status(cluster, namespace, "s", {"sessionID": change}, check=False)

    assert_refused(result, "status.sessionID is set once")
    assert get_session(cluster, namespace, "s")["status"]["sessionID"] == "first-id"


def test_stop_reason_cannot_be_removed(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "stopping", "stopReason": "LEASE_EXPIRED"})

    result = patch_status(
        cluster, namespace, "s", {"state": "stopping", "stopReason": None}, check=False
    )

    assert_refused(result, "status.stopReason is set once")


def test_stopping_session_cannot_return_to_ready(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "ready"})
    patch_status(cluster, namespace, "s", {"state": "stopping", "stopReason": "LEASE_EXPIRED"})

    result = patch_status(cluster, namespace, "s", {"state": "ready"}, check=False)

    assert_refused(result, "status.state cannot go from stopping back to a live state")


def test_ready_session_cannot_go_back_to_new(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "ready"})

    result = patch_status(cluster, namespace, "s", {"state": "new"}, check=False)

    assert_refused(result, "status.state cannot go back from ready to new")


def test_status_cannot_be_removed(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", {"state": "ready"})

    result = patch_status(cluster, namespace, "s", None, check=False)

    assert_refused(result, "status cannot be removed once it has been written")
    assert get_session(cluster, namespace, "s")["status"]["state"] == "ready"


def test_apiserver_allows_exactly_the_transitions_of_the_state_machine(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    """Every (from, to) pair: accepted iff ``lease.can_transition`` allows it or it stays put."""
    pairs = list(itertools.product(SessionState, repeat=2))
    names = {pair: f"{pair[0].value}-to-{pair[1].value}" for pair in pairs}
    manifests = [session_manifest(name, namespace) for name in names.values()]
    cluster.kubectl("create", "-f", "-", input_text="\n---\n".join(manifests))
    disagreements = []
    for (current, target), name in names.items():
        # One reason for both writes, so that only the state rules are under test here.
        reason = "FAILED" if SessionState.FAILED in (current, target) else "USER_STOPPED"
        patch_status(cluster, namespace, name, status_in(current, reason))
        result = patch_status(cluster, namespace, name, status_in(target, reason), check=False)
        expected = current == target or can_transition(current, target)
        if (result.returncode == 0) != expected:
            verdict = "accepted" if result.returncode == 0 else f"refused: {result.stderr}"
            disagreements.append(f"{current.value} -> {target.value} {verdict}")
    assert disagreements == []


# -- reading sessions ---------------------------------------------------------------------


@pytest.fixture
def ready_and_starting(cluster: ClusterWithKubectl, namespace: str) -> datetime:
    """Two sessions with a status as the operator writes it; returns their lease expiry."""
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=10)
    lease = {"leaseExpiresAt": rfc3339(expires), "lastHeartbeat": rfc3339(now)}
    apply_session(cluster, namespace, "living-room")
    apply_session(cluster, namespace, "kitchen")
    patch_status(cluster, namespace, "living-room", {"state": "ready", **lease})
    patch_status(cluster, namespace, "kitchen", {"state": "starting", **lease})
    return expires


def test_get_shows_state_expiry_heartbeat_and_reason_columns(
    cluster: ClusterWithKubectl, namespace: str, ready_and_starting: datetime
) -> None:
    output = cluster.kubectl("get", "sess", "living-room", "-n", namespace).stdout

    header, row = (re.split(r"\s{2,}", line.strip()) for line in output.splitlines())
    assert header == ["NAME", "STATE", "EXPIRES", "HOLD", "LAST HEARTBEAT", "REASON", "AGE"]
    assert row[:3] == ["living-room", "ready", rfc3339(ready_and_starting)]
    assert "<invalid>" not in output


def test_get_shows_the_end_of_a_hold(
    cluster: ClusterWithKubectl, namespace: str, ready_and_starting: datetime
) -> None:
    hold_until = rfc3339(ready_and_starting + timedelta(hours=1))
    patch_status(cluster, namespace, "living-room", {"holdUntil": hold_until})

    output = cluster.kubectl("get", "sess", "living-room", "-n", namespace).stdout

    row = re.split(r"\s{2,}", output.splitlines()[1].strip())
    assert row[2:4] == [rfc3339(ready_and_starting), hold_until]


def test_field_selector_on_state_filters_sessions(
    cluster: ClusterWithKubectl, namespace: str, ready_and_starting: datetime
) -> None:
    result = cluster.kubectl(
        "get", "sess", "-n", namespace, "--field-selector", "status.state=ready", "-o", "name"
    )

    assert result.stdout.split() == ["session.xg2g.io/living-room"]


def test_every_schema_field_has_a_description() -> None:
    """``kubectl explain`` has something to say about every field."""
    document = yaml.safe_load(CRD_FILE.read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undescribed = []
    pending: list[tuple[str, dict[str, Any]]] = [("Session", schema)]
    while pending:
        path, node = pending.pop()
        # The root metadata may carry nothing but its type; the apiserver documents ObjectMeta.
        if "type" in node and not node.get("description") and path != "Session.metadata":
            undescribed.append(path)
        pending.extend(
            (f"{path}.{key}", child) for key, child in node.get("properties", {}).items()
        )
        if "items" in node:
            pending.append((f"{path}[]", node["items"]))
    assert undescribed == []


# -- maximum lifetime and start timeout ---------------------------------------------------


def test_max_lifetime_alone_leaves_the_lease_to_the_operator(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    result = apply_session(
        cluster, namespace, "capped", {"lease": {"maxLifetimeSeconds": 3600}}, check=False
    )

    assert result.returncode == 0, result.stderr
    assert get_session(cluster, namespace, "capped")["spec"]["lease"] == {
        "maxLifetimeSeconds": 3600
    }


def test_max_lifetime_of_exactly_one_ttl_is_accepted(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5, "maxLifetimeSeconds": 60}

    result = apply_session(cluster, namespace, "one-lease", {"lease": lease}, check=False)

    assert result.returncode == 0, result.stderr


def test_max_lifetime_shorter_than_the_ttl_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    lease = {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5, "maxLifetimeSeconds": 59}

    result = apply_session(cluster, namespace, "short-life", {"lease": lease}, check=False)

    assert_refused(result, "spec.lease.maxLifetimeSeconds must be at least ttlSeconds")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"lease": {"maxLifetimeSeconds": 0}},
            "spec.lease.maxLifetimeSeconds: Invalid value: 0: spec.lease.maxLifetimeSeconds in"
            " body should be greater than or equal to 1",
        ),
        (
            {"lease": {"maxLifetimeSeconds": 31536001}},
            "should be less than or equal to 31536000",
        ),
        (
            {"template": POD_TEMPLATE, "startTimeoutSeconds": 0},
            "should be greater than or equal to 1",
        ),
        (
            {"template": POD_TEMPLATE, "startTimeoutSeconds": 86401},
            "should be less than or equal to 86400",
        ),
    ],
    ids=["lifetime-zero", "lifetime-above-a-year", "start-zero", "start-above-a-day"],
)
def test_limits_out_of_bounds_are_refused(
    cluster: ClusterWithKubectl, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    result = apply_session(cluster, namespace, "out-of-bounds", spec, check=False)

    assert_refused(result, expected)


def test_start_timeout_needs_a_template(cluster: ClusterWithKubectl, namespace: str) -> None:
    result = apply_session(cluster, namespace, "idle", {"startTimeoutSeconds": 60}, check=False)

    assert_refused(result, "spec.startTimeoutSeconds needs spec.template")


def test_start_timeout_with_a_template_is_accepted(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    spec = {"template": POD_TEMPLATE, "startTimeoutSeconds": 120}

    result = apply_session(cluster, namespace, "player", spec, check=False)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"startTimeoutSeconds": 300}, "spec.startTimeoutSeconds is immutable"),
        ({"startTimeoutSeconds": None}, "spec.startTimeoutSeconds cannot be added or removed"),
    ],
    ids=["changed", "removed"],
)
def test_start_timeout_is_fixed_at_creation(
    cluster: ClusterWithKubectl, namespace: str, patch: dict[str, Any], expected: str
) -> None:
    apply_session(
        cluster, namespace, "player", {"template": POD_TEMPLATE, "startTimeoutSeconds": 60}
    )

    result = patch_spec(cluster, namespace, "player", {"spec": patch})

    assert_refused(result, expected)


def test_start_timeout_cannot_be_added_after_creation(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "player", {"template": POD_TEMPLATE})

    result = patch_spec(cluster, namespace, "player", {"spec": {"startTimeoutSeconds": 60}})

    assert_refused(result, "spec.startTimeoutSeconds cannot be added or removed")


def test_max_lifetime_is_fixed_with_the_lease(cluster: ClusterWithKubectl, namespace: str) -> None:
    apply_session(cluster, namespace, "capped", {"lease": {"maxLifetimeSeconds": 3600}})

    result = patch_spec(
        cluster, namespace, "capped", {"spec": {"lease": {"maxLifetimeSeconds": 7200}}}
    )

    assert_refused(result, "spec.lease is immutable")


def limited_status(lease_expires: datetime, lifetime_ends: datetime) -> dict[str, str]:
    return {
        "state": "ready",
        "leaseExpiresAt": rfc3339(lease_expires),
        "lifetimeEndsAt": rfc3339(lifetime_ends),
        "startDeadline": rfc3339(lifetime_ends - timedelta(minutes=50)),
    }


END = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def test_lease_that_runs_until_the_end_of_the_lifetime_is_accepted(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", limited_status(END - timedelta(minutes=1), END))

    result = patch_status(cluster, namespace, "s", {"leaseExpiresAt": rfc3339(END)}, check=False)

    assert result.returncode == 0, result.stderr


def test_lease_past_the_end_of_the_lifetime_is_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", limited_status(END - timedelta(minutes=1), END))

    past = rfc3339(END + timedelta(milliseconds=1))
    result = patch_status(cluster, namespace, "s", {"leaseExpiresAt": past}, check=False)

    assert_refused(result, "status.leaseExpiresAt cannot pass status.lifetimeEndsAt")


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("lifetimeEndsAt", rfc3339(END + timedelta(hours=1))),
        ("lifetimeEndsAt", None),
        ("startDeadline", rfc3339(END)),
        ("startDeadline", None),
    ],
    ids=["lifetime-moved", "lifetime-removed", "start-moved", "start-removed"],
)
def test_limits_in_status_are_set_once(
    cluster: ClusterWithKubectl, namespace: str, field: str, change: str | None
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", limited_status(END - timedelta(minutes=1), END))

    result = patch_status(cluster, namespace, "s", {field: change}, check=False)

    assert_refused(result, f"status.{field} is set once")


def test_hold_until_the_end_of_the_lifetime_is_accepted_and_past_it_refused(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", limited_status(END - timedelta(minutes=1), END))

    until_the_end = patch_status(cluster, namespace, "s", {"holdUntil": rfc3339(END)}, check=False)
    past = rfc3339(END + timedelta(milliseconds=1))
    past_the_end = patch_status(cluster, namespace, "s", {"holdUntil": past}, check=False)

    assert until_the_end.returncode == 0, until_the_end.stderr
    assert_refused(past_the_end, "status.holdUntil cannot pass status.lifetimeEndsAt")


def test_a_hold_is_set_changed_and_cleared_in_the_spec(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")

    for hold in ({"until": "2026-12-06T18:00:00Z"}, {"until": "2026-12-06T19:00:00+01:00"}, None):
        result = patch_spec(cluster, namespace, "s", {"spec": {"hold": hold}})
        assert result.returncode == 0, result.stderr
    assert "hold" not in get_session(cluster, namespace, "s")["spec"]


@pytest.mark.parametrize(
    ("hold", "fragment"),
    [
        ({"until": "tomorrow"}, "spec.hold.until"),
        ({"until": "2026-12-06 18:00"}, "spec.hold.until"),
        ({}, "spec.hold.until: Required value"),
    ],
    ids=["not-a-time", "no-zone", "no-until"],
)
def test_a_hold_needs_an_rfc3339_until(
    cluster: ClusterWithKubectl, namespace: str, hold: dict[str, str], fragment: str
) -> None:
    apply_session(cluster, namespace, "s")

    result = patch_spec(cluster, namespace, "s", {"spec": {"hold": hold}})

    assert_refused(result, fragment)


def test_wide_listing_shows_when_the_lifetime_ends(
    cluster: ClusterWithKubectl, namespace: str
) -> None:
    apply_session(cluster, namespace, "s")
    patch_status(cluster, namespace, "s", limited_status(END - timedelta(minutes=1), END))

    output = cluster.kubectl("get", "sess", "s", "-n", namespace, "-o", "wide").stdout
    header, row = (re.split(r"\s{2,}", line.strip()) for line in output.splitlines())

    assert header[-1] == "LIFETIME ENDS"
    assert row[-1] == rfc3339(END)
