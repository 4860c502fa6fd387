"""The Session size check answers the apiserver's AdmissionReview."""

from __future__ import annotations

from typing import Any

import pytest

from session_operator.api.admission import encoded_size, review_answer
from session_operator.api.errors import BadRequest


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
    answer = review_answer(review(obj), max_bytes=encoded_size(obj))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"] == {"uid": "r-1", "allowed": True}


def test_a_session_one_byte_over_the_limit_is_refused_with_what_to_do() -> None:
    obj = session(100)
    size = encoded_size(obj)
    response = review_answer(review(obj), max_bytes=size - 1)["response"]
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
        review_answer(body, max_bytes=1024)
