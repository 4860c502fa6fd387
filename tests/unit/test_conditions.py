"""``metav1.Condition`` entries of a Session: ``Ready`` and ``LeaseValid``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from session_operator.conditions import LEASE_VALID, READY, Condition, merged_conditions

pytestmark = pytest.mark.unit

EARLIER = "2026-11-23T09:00:00Z"
NOW = datetime(2026, 11, 23, 10, 0, 5, 987654, tzinfo=UTC)
NOW_TEXT = "2026-11-23T10:00:05Z"


def existing(
    kind: str = READY, status: str = "True", transition: str | None = EARLIER
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": "NoWorkload",
        "message": "the session runs no workload",
        "observedGeneration": 1,
    }
    if transition is not None:
        entry["lastTransitionTime"] = transition
    return entry


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {entry["type"]: entry for entry in conditions}
    assert len(result) == len(conditions), "one entry per type"
    return result


def test_last_transition_time_is_kept_when_the_status_is_unchanged() -> None:
    update = Condition(READY, True, "WorkloadReady", "the workload Pod is Ready")
    merged = by_type(merged_conditions([existing()], [update], NOW, 2))

    ready = merged[READY]
    assert ready["lastTransitionTime"] == EARLIER
    assert ready["status"] == "True"
    assert ready["reason"] == "WorkloadReady"
    assert ready["message"] == "the workload Pod is Ready"


def test_last_transition_time_moves_when_the_status_changes() -> None:
    update = Condition(READY, False, "LeaseExpired", "no heartbeat renewed the lease")
    merged = by_type(merged_conditions([existing()], [update], NOW, 2))

    ready = merged[READY]
    assert ready["status"] == "False"
    assert ready["lastTransitionTime"] == NOW_TEXT
    assert ready["reason"] == "LeaseExpired"


def test_condition_without_a_transition_time_gets_now() -> None:
    update = Condition(READY, True, "NoWorkload", "the session runs no workload")
    merged = by_type(merged_conditions([existing(transition=None)], [update], NOW, 2))

    assert merged[READY]["lastTransitionTime"] == NOW_TEXT


def test_new_condition_type_is_added_with_now() -> None:
    update = Condition(LEASE_VALID, True, "LeaseGranted", "lease runs until later")
    merged = by_type(merged_conditions([existing()], [update], NOW, 2))

    assert set(merged) == {READY, LEASE_VALID}
    assert merged[LEASE_VALID]["lastTransitionTime"] == NOW_TEXT
    assert merged[LEASE_VALID]["status"] == "True"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(NOW, NOW_TEXT, id="utc-with-microseconds"),
        pytest.param(
            datetime(2026, 11, 23, 12, 0, 5, 999999, tzinfo=timezone(timedelta(hours=2))),
            NOW_TEXT,
            id="other-offset",
        ),
        pytest.param(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z", id="whole"),
    ],
)
def test_last_transition_time_is_rfc3339_utc_in_whole_seconds(now: datetime, expected: str) -> None:
    update = Condition(READY, True, "NoWorkload", "the session runs no workload")
    merged = merged_conditions([], [update], now, 1)

    assert merged[0]["lastTransitionTime"] == expected


def test_status_is_written_as_the_strings_true_and_false() -> None:
    updates = [
        Condition(READY, False, "WorkloadPending", "the workload is not created yet"),
        Condition(LEASE_VALID, True, "LeaseGranted", "lease runs until later"),
    ]
    merged = by_type(merged_conditions([], updates, NOW, 1))

    assert merged[READY]["status"] == "False"
    assert merged[LEASE_VALID]["status"] == "True"


def test_observed_generation_is_set_on_every_updated_condition() -> None:
    updates = [
        Condition(READY, True, "NoWorkload", "the session runs no workload"),
        Condition(LEASE_VALID, False, "LeaseExpired", "no heartbeat renewed the lease"),
    ]
    merged = by_type(
        merged_conditions([existing(), existing(LEASE_VALID)], updates, NOW, generation=7)
    )

    assert merged[READY]["observedGeneration"] == 7
    assert merged[LEASE_VALID]["observedGeneration"] == 7


def test_conditions_have_exactly_the_metav1_condition_fields() -> None:
    update = Condition(READY, True, "NoWorkload", "the session runs no workload")
    merged = merged_conditions([], [update], NOW, 1)

    assert set(merged[0]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_other_condition_types_are_preserved_untouched() -> None:
    foreign = {
        "type": "PodScheduled",
        "status": "True",
        "reason": "Scheduled",
        "message": "written by someone else",
        "lastTransitionTime": "2026-11-23T08:00:00Z",
        "observedGeneration": 1,
    }
    update = Condition(READY, False, "LeaseExpired", "no heartbeat renewed the lease")
    merged = merged_conditions([foreign, existing()], [update], NOW, 2)

    assert merged[0] == foreign
    assert by_type(merged)[READY]["status"] == "False"


def test_existing_conditions_are_not_modified_in_place() -> None:
    before = [existing()]
    snapshot = copy.deepcopy(before)
    update = Condition(READY, False, "LeaseExpired", "no heartbeat renewed the lease")
    merged_conditions(before, [update], NOW, 2)

    assert before == snapshot
