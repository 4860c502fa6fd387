"""What the operator reads from a Session's workload Pod, decoded from Pod bodies."""

from __future__ import annotations

from typing import Any

import pytest

from session_operator.models import SessionRef
from session_operator.workload import PodSummary, summarize_pod

pytestmark = pytest.mark.unit

SESSION_UID = "6f1c1f9e-0000-4000-8000-000000000001"


def owner(uid: str = SESSION_UID, *, controller: bool | None = True) -> dict[str, Any]:
    reference: dict[str, Any] = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "name": "living-room",
        "uid": uid,
    }
    if controller is not None:
        reference["controller"] = controller
    return reference


def pod_body(
    *,
    labels: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "living-room",
            "namespace": "media",
            "labels": {"xg2g.io/session": "living-room"} if labels is None else labels,
            "ownerReferences": [owner()] if owners is None else owners,
        },
        "spec": {"containers": [{"name": "player", "image": "busybox"}]},
    }
    if status is not None:
        body["status"] = status
    return body


def summary(**kwargs: Any) -> PodSummary:
    result = summarize_pod(pod_body(**kwargs))
    assert result is not None
    return result


def terminated(name: str, **state: Any) -> dict[str, Any]:
    return {"name": name, "ready": False, "state": {"terminated": state}}


def running(name: str) -> dict[str, Any]:
    return {"name": name, "ready": True, "state": {"running": {"startedAt": "2026-11-23T10:00Z"}}}


# --- which Pods belong to a session ----------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({}, id="no-labels"),
        pytest.param({"app": "player"}, id="other-labels"),
        pytest.param({"xg2g.io/session": ""}, id="empty-session-label"),
    ],
)
def test_pod_without_the_session_label_is_not_summarized(labels: dict[str, str]) -> None:
    assert summarize_pod(pod_body(labels=labels)) is None


def test_pod_with_null_labels_is_not_summarized() -> None:
    body = pod_body()
    body["metadata"]["labels"] = None

    assert summarize_pod(body) is None


def test_pod_without_metadata_is_not_summarized() -> None:
    assert summarize_pod({"kind": "Pod"}) is None


def test_labelled_pod_names_its_session_by_the_label() -> None:
    pod = summary(labels={"xg2g.io/session": "living-room", "app": "player"})

    assert pod.session == SessionRef(namespace="media", name="living-room")
    assert pod.name == "living-room"


def test_a_labelled_pod_not_named_after_its_session_is_not_its_workload() -> None:
    # The operator names the Pod after the session: another Pod that carries the label
    # and even a controller reference to the session cannot pass for its workload.
    assert summarize_pod(pod_body(labels={"xg2g.io/session": "kitchen"})) is None


# --- who controls it -------------------------------------------------------------------------


def test_controller_uid_is_the_controlling_owner_reference() -> None:
    pod = summary(owners=[owner("other-owner", controller=False), owner(SESSION_UID)])

    assert pod.controller_uid == SESSION_UID


@pytest.mark.parametrize(
    "owners",
    [
        pytest.param([], id="no-owners"),
        pytest.param([owner(controller=False)], id="owner-not-controller"),
        pytest.param([owner(controller=None)], id="controller-unset"),
    ],
)
def test_pod_without_a_controller_has_no_controller_uid(owners: list[dict[str, Any]]) -> None:
    assert summary(owners=owners).controller_uid is None


def test_labelled_pod_controlled_by_another_owner_reports_that_owner() -> None:
    # The label alone never makes a Pod the session's: the store compares this uid.
    assert summary(owners=[owner("someone-else")]).controller_uid == "someone-else"


# --- phase and readiness ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(None, id="no-status"),
        pytest.param({}, id="empty-status"),
        pytest.param({"phase": ""}, id="empty-phase"),
        pytest.param({"phase": None}, id="null-phase"),
    ],
)
def test_phase_defaults_to_pending(status: dict[str, Any] | None) -> None:
    pod = summary(status=status)

    assert pod.phase == "Pending"
    assert not pod.ready
    assert not pod.failed
    assert pod.message == ""


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        pytest.param([{"type": "Ready", "status": "True"}], True, id="ready-true"),
        pytest.param([{"type": "Ready", "status": "False"}], False, id="ready-false"),
        pytest.param([{"type": "Ready", "status": "Unknown"}], False, id="ready-unknown"),
        pytest.param(
            [{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}],
            False,
            id="containers-ready-is-not-ready",
        ),
        pytest.param(
            [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            True,
            id="ready-among-others",
        ),
        pytest.param([], False, id="no-conditions"),
        pytest.param(None, False, id="null-conditions"),
    ],
)
def test_ready_is_the_pods_ready_condition(
    conditions: list[dict[str, str]] | None, ready: bool
) -> None:
    assert summary(status={"phase": "Running", "conditions": conditions}).ready is ready


@pytest.mark.parametrize(
    ("phase", "failed"),
    [
        ("Pending", False),
        ("Running", False),
        ("Unknown", False),
        ("Failed", True),
        ("Succeeded", True),
    ],
)
def test_a_pod_that_ended_has_failed_whatever_its_exit(phase: str, failed: bool) -> None:
    # A session's workload is meant to run until the session stops: ending early is a failure.
    pod = summary(status={"phase": phase})

    assert pod.phase == phase
    assert pod.failed is failed


# --- why it ended ----------------------------------------------------------------------------


def test_message_joins_the_pods_reason_and_message() -> None:
    status = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
    }

    assert summary(status=status).message == "Evicted; The node was low on resource: memory."


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param({"reason": "Evicted"}, "Evicted", id="reason-only"),
        pytest.param({"message": "deadline exceeded"}, "deadline exceeded", id="message-only"),
        pytest.param({"reason": "", "message": None}, "", id="empty-values"),
    ],
)
def test_message_skips_what_the_pod_does_not_say(status: dict[str, Any], message: str) -> None:
    assert summary(status={"phase": "Failed", **status}).message == message


def test_message_names_each_terminated_container_and_its_reason() -> None:
    status = {
        "phase": "Failed",
        "containerStatuses": [
            terminated("player", reason="OOMKilled", exitCode=137),
            running("sidecar"),
            terminated("logger", reason="Error", exitCode=1),
        ],
    }

    assert summary(status=status).message == "container player: OOMKilled; container logger: Error"


def test_message_gives_the_exit_code_of_a_container_that_ended_without_a_reason() -> None:
    status = {"phase": "Failed", "containerStatuses": [terminated("player", exitCode=3)]}

    assert summary(status=status).message == "container player: exit code 3"


def test_message_puts_the_pods_own_words_before_its_containers() -> None:
    status = {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline",
        "containerStatuses": [terminated("player", reason="Error", exitCode=143)],
    }

    assert summary(status=status).message == (
        "DeadlineExceeded; Pod was active on the node longer than the specified deadline; "
        "container player: Error"
    )


@pytest.mark.parametrize(
    "container",
    [
        pytest.param(running("player"), id="running"),
        pytest.param(
            {"name": "player", "state": {"waiting": {"reason": "ContainerCreating"}}},
            id="waiting",
        ),
        pytest.param({"name": "player", "state": {"terminated": None}}, id="null-terminated"),
        pytest.param({"name": "player"}, id="no-state"),
        pytest.param(
            {
                "name": "player",
                "state": {"running": {}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
            },
            id="restarted-after-error",
        ),
    ],
)
def test_containers_that_have_not_terminated_add_nothing(container: dict[str, Any]) -> None:
    status = {"phase": "Running", "containerStatuses": [container]}

    assert summary(status=status).message == ""


def test_message_names_an_init_container_that_failed() -> None:
    status = {
        "phase": "Failed",
        "initContainerStatuses": [terminated("fetch-config", reason="Error", exitCode=1)],
        "containerStatuses": [
            {"name": "player", "state": {"waiting": {"reason": "PodInitializing"}}}
        ],
    }

    message = summary(status=status).message
    assert "fetch-config" in message
    assert "Error" in message
