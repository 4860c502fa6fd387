"""The failures of an apiserver call that a caller can act on, and their translation."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

T = TypeVar("T")

_FAILED_PATCH_TEST = "the server rejected our request due to an error in our request"


class KubernetesError(Exception):
    """An apiserver call failed."""


class NotFound(KubernetesError):
    """The object does not exist (404)."""


class PreconditionFailed(KubernetesError):
    """A compare-and-set write lost: a JSON-patch ``test`` failed (422) or the
    resourceVersion moved on (409). Re-read and decide again."""


class Rejected(KubernetesError):
    """The apiserver refused the request for a reason a retry will not fix (4xx)."""


class Invalid(Rejected):
    """The apiserver found the request itself invalid (400, or 422 for anything but a
    failed patch test): a query it does not know, a field it does not accept."""


class ApiUnavailable(KubernetesError):
    """The apiserver could not be reached or answered with a server error; retry later."""


class ResourceVersionExpired(KubernetesError):
    """The resourceVersion to watch from is no longer available (410 Gone): list again."""


async def translated(call: Awaitable[T]) -> T:
    """Await an apiserver call, raising the matching :class:`KubernetesError` on failure."""
    try:
        return await call
    except ApiException as error:
        raise _from_api_exception(error) from error
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error


def _from_api_exception(error: ApiException) -> KubernetesError:
    return error_for_status(int(error.status or 0), _status_message(error))


def error_for_status(status: int, message: str) -> KubernetesError:
    """The one table from an apiserver answer's status (0: none) to what a caller acts on."""
    if status == 404:
        return NotFound(message)
    if status == 410:
        return ResourceVersionExpired(message)
    if status == 409 or (status == 422 and _is_failed_test(message)):
        return PreconditionFailed(message)
    if status == 429 or status >= 500 or status == 0:
        return ApiUnavailable(message)
    if status in (400, 422):
        return Invalid(f"{status}: {message}")
    return Rejected(f"{status}: {message}")


def _is_failed_test(message: str) -> bool:
    # A failed JSON-patch `test` comes back as a bare 422 with this message and no causes;
    # a schema or CEL refusal names the object and the field instead.
    return message == _FAILED_PATCH_TEST


def _status_message(error: ApiException) -> str:
    raw: object = error.body
    body = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except ValueError:
            return body.strip() or str(error.reason)
        if isinstance(decoded, dict) and "message" in decoded:
            return str(decoded["message"])
    return str(error.reason)
