"""The Session checks the apiserver cannot make itself, as a validating admission webhook
(``POST /admission/sessions``): the size of a Session, and how far ahead its hold ends.

Every replica holds every Session, and a ``spec.template`` can be as large as the
apiserver's request limit (about 1.5 MB). The apiserver's own tools (OpenAPI bounds, CEL)
cannot bound the size of a free-form template, so the operator answers the apiserver's
AdmissionReview itself: a Session whose JSON is larger than ``maxSessionBytes`` is refused
with a message that says what to do.

What users write is what is bounded, never what the operator needs to write: an update
is refused only when it makes the Session larger than the limit *and* grows what users
own (spec, labels, finalizers, annotations; the operator's state label and finalizer
aside). The operator's own
label and finalizer writes, a finalizer's removal, and every update to a Session that
a lowered ``maxSessionBytes`` now finds too large but that grows nothing, pass: a Session
once admitted can always be stopped, released and deleted. (Status is written through
the status subresource, which the webhook is not registered for.)

A hold (``spec.hold.until``) further ahead than now plus ``maxHold`` is refused with one
sentence naming the bound (``hold.hold_beyond_bound``): the apiserver's CEL has no clock.
A SessionPolicy's ``maxHoldSeconds`` narrows that bound in its namespace: the policies are
listed for each request that sets or changes a hold, and for no other.
Only a hold the request sets or changes is checked, so an existing hold never blocks
another update, and a hold's end that has come nearer with time never becomes wrong.

The webhook is served on a listener of its own (``webhookPort``, over TLS with the API's
certificate, which the apiserver verifies against its ValidatingWebhookConfiguration's
CA), never on the heartbeat API's port. The apiserver sends no credentials, so the
listener bounds what an anonymous caller can make it hold: a body at most twice the
limit plus room for the review, read within :data:`BODY_DEADLINE_SECONDS`. A larger
review is refused without being held (its uid is read from its start, the rest dropped as
it arrives), so the user still learns the limit.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from session_operator.api.errors import BadRequest
from session_operator.hold import MAX_HOLD_SETTING, hold_beyond_bound
from session_operator.k8s.session_policies import SessionPolicyApi
from session_operator.models import FINALIZER, STATE_LABEL
from session_operator.session_policy import max_hold_in_force
from session_operator.timestamps import parse_timestamp

ADMISSION_PATH = "/admission/sessions"
ADMISSION_REVIEW = "admission.k8s.io/v1"
REVIEW_OVERHEAD_BYTES = 64 * 1024
"""Room in a review beyond its object and old object: its request's fields, userInfo."""
BODY_DEADLINE_SECONDS = 5.0
"""A review's body arrives within this, or the connection is dropped (the apiserver
gives up on the webhook after its ``timeoutSeconds`` anyway)."""
_OPERATOR_LABELS = frozenset({STATE_LABEL})
UID_PREFIX_BYTES = 4096
"""Where an oversized review's request uid is looked for: its first field."""
_REQUEST_UID = re.compile(rb'"request":\s*\{\s*"uid":\s*"([0-9A-Za-z-]{1,64})"')


def max_review_bytes(max_session_bytes: int) -> int:
    """The largest review body read: an update's object and old object, each at most
    *max_session_bytes* when the operator wrote it, and the rest of the review."""
    return 2 * max_session_bytes + REVIEW_OVERHEAD_BYTES


def encoded_size(obj: Mapping[str, Any]) -> int:
    """The size of *obj* as compact JSON, in bytes: what etcd and every watcher carry."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def user_content_size(obj: Mapping[str, Any]) -> int:
    """The size of what users write of a Session: spec, labels and finalizers (but the
    operator's), annotations."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = metadata.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    finalizers = metadata.get("finalizers")
    finalizers = finalizers if isinstance(finalizers, list) else []
    owned = {
        "spec": obj.get("spec"),
        "labels": {key: value for key, value in labels.items() if key not in _OPERATOR_LABELS},
        "finalizers": [name for name in finalizers if name != FINALIZER],
        "annotations": metadata.get("annotations"),
    }
    return encoded_size(owned)


def hold_set(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> datetime | None:
    """The end of the hold that writing *obj* over *old* (``None``: a creation) sets or
    changes: its ``spec.hold.until``, unless *old* has the same; ``None`` when it sets no
    new hold (or the text is no timestamp, which the CRD's format refuses anyway)."""
    until = _hold_until(obj)
    if until is None or (old is not None and _hold_until(old) == until):
        return None
    return until


def _hold_until(obj: Mapping[str, Any]) -> datetime | None:
    spec = obj.get("spec")
    hold = spec.get("hold") if isinstance(spec, Mapping) else None
    until = hold.get("until") if isinstance(hold, Mapping) else None
    try:
        return parse_timestamp(until) if isinstance(until, str) else None
    except ValueError:
        return None


def review_answer(
    review: Mapping[str, Any],
    max_bytes: int,
    max_hold: timedelta,
    now: datetime,
    hold_bound: str = MAX_HOLD_SETTING,
) -> dict[str, Any]:
    """The AdmissionReview answering *review* at *now*: allowed unless it makes its object
    exceed *max_bytes* by growing what users own, or sets a hold that ends more than
    *max_hold* after *now*, which *hold_bound* names (see the module's docstring).

    Raises :class:`BadRequest` (400) when *review* is not an AdmissionReview request.
    """
    request = review.get("request")
    if review.get("kind") != "AdmissionReview" or not isinstance(request, Mapping):
        raise BadRequest("the body is not an AdmissionReview")
    uid = request.get("uid")
    obj = request.get("object")
    if not isinstance(uid, str) or not isinstance(obj, Mapping):
        raise BadRequest("the AdmissionReview has no request uid or object")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    size = encoded_size(obj)
    old = request.get("oldObject")
    grows = not isinstance(old, Mapping) or user_content_size(obj) > user_content_size(old)
    if size > max_bytes and grows:
        return refusal(uid, str(size), max_bytes)
    until = hold_set(obj, old if isinstance(old, Mapping) else None)
    if (
        until is not None
        and (beyond := hold_beyond_bound(until, now, max_hold, hold_bound)) is not None
    ):
        return refused(uid, beyond)
    return {"apiVersion": ADMISSION_REVIEW, "kind": "AdmissionReview", "response": response}


def refusal(uid: str, size: str, max_bytes: int) -> dict[str, Any]:
    """The AdmissionReview refusing request *uid*, whose Session is *size* bytes."""
    return refused(
        uid,
        f"the Session is {size} bytes of JSON and at most {max_bytes} are accepted"
        " (operator setting maxSessionBytes): keep large data out of"
        " spec.template, in a ConfigMap or Secret that the Pod mounts",
    )


def refused(uid: str, message: str) -> dict[str, Any]:
    """The AdmissionReview refusing request *uid* as invalid, saying *message*."""
    response = {
        "uid": uid,
        "allowed": False,
        "status": {"code": 422, "reason": "Invalid", "message": message},
    }
    return {"apiVersion": ADMISSION_REVIEW, "kind": "AdmissionReview", "response": response}


class AdmissionRoutes:
    """The webhook's one route, refusing Sessions over *max_bytes* and holds further than
    *max_hold* from the *clock*'s now, or than the namespace's SessionPolicies allow where
    *policies* reads them (``None``: *max_hold* alone)."""

    def __init__(
        self,
        max_bytes: int,
        max_hold: timedelta,
        clock: Callable[[], datetime],
        policies: SessionPolicyApi | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self._max_hold = max_hold
        self._clock = clock
        self._policies = policies
        self.max_body_bytes = max_review_bytes(max_bytes)

    def register(self, router: web.UrlDispatcher) -> None:
        """Add ``POST /admission/sessions`` to *router*."""
        router.add_route("POST", ADMISSION_PATH, self.review)

    async def review(self, request: web.Request) -> web.Response:
        """Answer one AdmissionReview from the apiserver."""
        if request.content_length is None:
            raise web.HTTPLengthRequired()
        try:
            async with asyncio.timeout(BODY_DEADLINE_SECONDS):
                if request.content_length > self.max_body_bytes:
                    return web.json_response(await self._refuse_unread(request))
                body = await request.read()
        except TimeoutError as error:
            raise BadRequest(
                f"the body did not arrive within {BODY_DEADLINE_SECONDS:g}s"
            ) from error
        except ConnectionError as error:  # a dropped upload: nobody reads the answer
            raise BadRequest("the connection was lost before the body arrived") from error
        try:
            review = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise BadRequest("the body is not JSON") from error
        if not isinstance(review, Mapping):
            raise BadRequest("the body is not an AdmissionReview")
        max_hold, bound = await self._hold_bound(review)
        answer = review_answer(review, self._max_bytes, max_hold, self._clock(), bound)
        return web.json_response(answer)

    async def _hold_bound(self, review: Mapping[str, Any]) -> tuple[timedelta, str]:
        """The longest hold the reviewed Session may be given, and what sets it: the
        operator's maxHold, narrowed by its namespace's SessionPolicies, which are listed
        only when the request sets or changes a hold. A list that fails is the webhook's
        failure (503): the apiserver applies the webhook's failurePolicy."""
        request = review.get("request")
        if self._policies is None or not isinstance(request, Mapping):
            return self._max_hold, MAX_HOLD_SETTING
        obj, old, namespace = (request.get(key) for key in ("object", "oldObject", "namespace"))
        if (
            not isinstance(obj, Mapping)
            or not isinstance(namespace, str)
            or hold_set(obj, old if isinstance(old, Mapping) else None) is None
        ):
            return self._max_hold, MAX_HOLD_SETTING
        policies = await self._policies.list(namespace)
        return max_hold_in_force(policies, self._max_hold, namespace)

    async def _refuse_unread(self, request: web.Request) -> dict[str, Any]:
        """The refusal of a review too large to read: its Session is surely over the limit.
        The request's uid is the review's first field (the apiserver's encoding); the rest
        is read and dropped as it comes, never held."""
        head = await request.content.read(UID_PREFIX_BYTES)
        found = _REQUEST_UID.search(head)
        if found is None:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_body_bytes, actual_size=request.content_length or 0
            )
        while await request.content.readany():
            pass
        size = request.content_length or 0
        return refusal(
            found.group(1).decode(), f"over {size - REVIEW_OVERHEAD_BYTES}", self._max_bytes
        )
