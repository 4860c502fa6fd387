"""The admission webhook answers the apiserver's AdmissionReview: Session size, hold bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_operator.api.admission import (
    REVIEW_OVERHEAD_BYTES,
    AdmissionRoutes,
    encoded_size,
    max_review_bytes,
    review_answer,
)
from session_operator.api.errors import BadRequest
from session_operator.models import FINALIZER, STATE_LABEL

MAX_HOLD = timedelta(hours=8)
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "r-1", "operation": "CREATE", "object": obj},
    }


def session(padding: int) -> dict[str, Any]:
    return {
        "kind": "Session",
        "spec": {"template": {"metadata": {"annotations": {"p": "x" * padding}}}},
    }


def test_a_session_up_to_the_limit_is_allowed_and_the_answer_echoes_the_uid() -> None:
    obj = session(100)
    answer = review_answer(review(obj), max_bytes=encoded_size(obj), max_hold=MAX_HOLD, now=NOW)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"] == {"uid": "r-1", "allowed": True}


def test_a_session_one_byte_over_the_limit_is_refused_with_what_to_do() -> None:
    obj = session(100)
    size = encoded_size(obj)
    answer = review_answer(review(obj), max_bytes=size - 1, max_hold=MAX_HOLD, now=NOW)
    response = answer["response"]
    assert response["uid"] == "r-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    message = response["status"]["message"]
    assert f"the Session is {size} bytes" in message
    assert f"at most {size - 1} are accepted" in message
    assert "maxSessionBytes" in message


def test_size_counts_bytes_of_compact_json_not_characters() -> None:
    assert encoded_size({"a": "é"}) == len('{"a":"é"}'.encode())


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": "Pod"},
        {"kind": "AdmissionReview"},
        {"kind": "AdmissionReview", "request": {"uid": "r"}},
        {"kind": "AdmissionReview", "request": {"object": {}}},
    ],
)
def test_what_is_not_a_review_request_is_a_bad_request(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        review_answer(body, max_bytes=1024, max_hold=MAX_HOLD, now=NOW)


LIMIT = 2048


def update(obj: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    body = review(obj)
    body["request"].update(operation="UPDATE", oldObject=old)
    return body


def stored(padding: int, **metadata: Any) -> dict[str, Any]:
    """A Session as stored, its template padded by *padding* bytes."""
    return {**session(padding), "metadata": {"name": "s", **metadata}}


def allowed(body: dict[str, Any]) -> bool:
    return bool(
        review_answer(body, max_bytes=LIMIT, max_hold=MAX_HOLD, now=NOW)["response"]["allowed"]
    )


def test_the_operators_writes_pass_on_a_session_at_the_limit() -> None:
    # Admitted a few bytes under the limit, then given its state label and finalizer.
    padding = LIMIT - 120
    old = stored(padding)
    assert encoded_size(old) <= LIMIT
    labelled = stored(padding, labels={STATE_LABEL: "starting"}, finalizers=[FINALIZER])
    assert encoded_size(labelled) > LIMIT
    assert allowed(update(labelled, old))
    # ... and its finalizer removed, so that it can be deleted.
    assert allowed(update(stored(padding, labels={STATE_LABEL: "stopped"}), labelled))


def test_a_lowered_limit_does_not_wedge_a_session_that_grows_nothing() -> None:
    old = stored(3 * LIMIT, labels={STATE_LABEL: "ready"})
    assert allowed(update(stored(3 * LIMIT, labels={STATE_LABEL: "stopping"}), old))
    assert allowed(update(stored(2 * LIMIT), old))  # shrinking is always allowed


def test_a_user_who_grows_a_session_past_the_limit_is_refused() -> None:
    old = stored(LIMIT - 300)
    grown = stored(LIMIT - 300, annotations={"note": "y" * 400})
    assert not allowed(update(grown, old))
    relabelled = stored(LIMIT - 300, labels={"team": "z" * 400})
    assert not allowed(update(relabelled, old))
    held = stored(LIMIT - 300, finalizers=[f"example.com/hold-{n}" for n in range(20)])
    assert not allowed(update(held, old))


def test_a_review_body_holds_two_sessions_and_the_review_at_most() -> None:
    assert max_review_bytes(LIMIT) == 2 * LIMIT + REVIEW_OVERHEAD_BYTES
    assert AdmissionRoutes(LIMIT, MAX_HOLD, lambda: NOW).max_body_bytes == max_review_bytes(LIMIT)


# --- the hold bound ----------------------------------------------------------------------


def holding(until: str | None, **spec: Any) -> dict[str, Any]:
    """A Session whose spec holds it until *until* (``None``: no hold)."""
    hold = {"hold": {"until": until}} if until is not None else {}
    return {"kind": "Session", "metadata": {"name": "s"}, "spec": {**hold, **spec}}


def hold_answer(body: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = review_answer(body, 1 << 20, MAX_HOLD, NOW)["response"]
    return response


def test_a_hold_within_max_hold_is_admitted() -> None:
    assert hold_answer(review(holding("2026-12-06T18:00:00Z")))["allowed"] is True
    assert hold_answer(review(holding("2026-12-06T19:00:00+01:00")))["allowed"] is True


def test_a_hold_beyond_max_hold_is_refused_with_one_sentence_naming_the_bound() -> None:
    response = hold_answer(review(holding("2026-12-06T18:00:00.001Z")))
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert response["status"]["message"] == (
        "spec.hold.until 2026-12-06T18:00:00.001Z is more than 8h ahead, the longest hold the"
        " operator's maxHold allows: hold until 2026-12-06T18:00:00.000Z at the latest"
    )


def test_an_update_that_changes_the_hold_is_checked() -> None:
    body = update(holding("2026-12-07T00:00:00Z"), holding("2026-12-06T12:00:00Z"))
    assert hold_answer(body)["allowed"] is False
    body = update(holding("2026-12-07T00:00:00Z"), holding(None))
    assert hold_answer(body)["allowed"] is False


def test_an_existing_hold_never_blocks_another_update() -> None:
    # Admitted under a larger maxHold (or before the webhook): stopping it still works,
    # and the same instant written another way is no new hold.
    old = holding("2026-12-08T00:00:00Z")
    assert hold_answer(update(holding("2026-12-08T00:00:00Z", stop=True), old))["allowed"]
    assert hold_answer(update(holding("2026-12-08T01:00:00+01:00"), old))["allowed"]
    assert hold_answer(update(holding(None), old))["allowed"]  # release


def test_with_a_max_hold_of_zero_every_new_hold_is_refused() -> None:
    response = review_answer(review(holding("2026-12-06T10:00:01Z")), 1 << 20, timedelta(0), NOW)
    assert response["response"]["allowed"] is False
    assert "maxHold is 0" in response["response"]["status"]["message"]


def test_a_hold_the_schema_refuses_is_left_to_the_schema() -> None:
    assert hold_answer(review(holding("tomorrow")))["allowed"] is True
