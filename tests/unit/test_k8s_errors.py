"""The one table from an apiserver answer to the failure a caller acts on: each status code,
the failed JSON-patch test among the 422s, the message read from the answer's Status, and
the failures to reach the apiserver at all."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from session_operator.k8s.errors import (
    ApiUnavailable,
    Invalid,
    KubernetesError,
    NotFound,
    PreconditionFailed,
    Rejected,
    ResourceVersionExpired,
    error_for_status,
    translated,
)

FAILED_PATCH_TEST = "the server rejected our request due to an error in our request"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, 'sessions.xg2g.io "s" not found', NotFound),
        (410, "too old resource version: 5 (20)", ResourceVersionExpired),
        (409, "the object has been modified", PreconditionFailed),
        (422, FAILED_PATCH_TEST, PreconditionFailed),
        (422, 'Session.xg2g.io "s" is invalid: spec.leaseTTLSeconds', Invalid),
        (429, "too many requests", ApiUnavailable),
        (500, "etcdserver: request timed out", ApiUnavailable),
        (503, "the server is currently unable to handle the request", ApiUnavailable),
        (504, "the server was unable to return a response in time", ApiUnavailable),
        (0, "no status", ApiUnavailable),
        (400, "bad request", Invalid),
        (401, "Unauthorized", Rejected),
        (403, "sessions.xg2g.io is forbidden", Rejected),
        (405, "method not allowed", Rejected),
        (499, "an unknown client error", Rejected),
    ],
)
def test_each_status_is_the_failure_a_caller_acts_on(
    status: int, message: str, expected: type[KubernetesError]
) -> None:
    error = error_for_status(status, message)
    assert type(error) is expected
    assert message in str(error)


@pytest.mark.parametrize(("status", "says"), [(403, "403: denied"), (422, "422: denied")])
def test_a_refusal_names_its_status(status: int, says: str) -> None:
    assert str(error_for_status(status, "denied")) == says


def api_exception(status: int, body: str | bytes | None, reason: str = "Reason") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    return error


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (api_exception(404, '{"kind":"Status","message":"sessions \\"s\\" not found"}'),
         NotFound, 'sessions "s" not found'),
        (api_exception(422, f'{{"message":"{FAILED_PATCH_TEST}"}}'), PreconditionFailed,
         FAILED_PATCH_TEST),
        (api_exception(410, b'{"message":"too old resource version"}'), ResourceVersionExpired,
         "too old resource version"),
        (api_exception(400, "  not JSON at all \n"), Invalid, "400: not JSON at all"),
        (api_exception(400, "", "Bad Request"), Invalid, "400: Bad Request"),
        (api_exception(403, '{"kind":"Status"}', "Forbidden"), Rejected, "403: Forbidden"),
        (api_exception(403, None, "Forbidden"), Rejected, "403: Forbidden"),
        (api_exception(500, '["not", "a", "Status"]', "Internal"), ApiUnavailable, "Internal"),
        (api_exception(0, None, "no answer"), ApiUnavailable, "no answer"),
        (TimeoutError(), ApiUnavailable, "apiserver unreachable: TimeoutError()"),
        (aiohttp.ClientConnectionError("reset"), ApiUnavailable,
         "apiserver unreachable: ClientConnectionError('reset')"),
        (ConnectionRefusedError(111, "refused"), ApiUnavailable,
         "apiserver unreachable: ConnectionRefusedError(111, 'refused')"),
    ],
)  # fmt: skip
async def test_a_failed_call_raises_the_failure_of_its_answer(
    error: Exception, expected: type[KubernetesError], message: str
) -> None:
    async def call() -> None:
        raise error

    with pytest.raises(expected) as raised:
        await translated(call())
    assert type(raised.value) is expected
    assert str(raised.value) == message
    assert raised.value.__cause__ is error


async def test_an_answered_call_is_returned_as_it_is() -> None:
    async def call() -> dict[str, str]:
        return {"kind": "Session"}

    assert await translated(call()) == {"kind": "Session"}
