"""The Session size check, as a validating admission webhook (``POST /admission/sessions``).

Every replica holds every Session, and a ``spec.template`` can be as large as the
apiserver's request limit (about 1.5 MB). The apiserver's own tools (OpenAPI bounds, CEL)
cannot bound the size of a free-form template, so the operator answers the apiserver's
AdmissionReview itself: a Session whose JSON is larger than ``maxSessionBytes`` is refused
with a message that says what to do. The apiserver calls this over TLS with the CA of its
ValidatingWebhookConfiguration (the Helm chart registers it); it sends no credentials, and
the answer tells a caller nothing about the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from session_operator.api.errors import BadRequest

ADMISSION_PATH = "/admission/sessions"
ADMISSION_REVIEW = "admission.k8s.io/v1"
# The apiserver sends the object and, on update, its old version: twice the largest object
# it stores (etcd's 1.5 MiB), and some room for the rest of the review.
MAX_REVIEW_BYTES = 4 * 1024 * 1024


def encoded_size(obj: Mapping[str, Any]) -> int:
    """The size of *obj* as compact JSON, in bytes: what etcd and every watcher carry."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def review_answer(review: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """The AdmissionReview answering *review*: allowed unless its object exceeds *max_bytes*.

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
    if size > max_bytes:
        response = {
            "uid": uid,
            "allowed": False,
            "status": {
                "code": 422,
                "reason": "Invalid",
                "message": (
                    f"the Session is {size} bytes of JSON and at most {max_bytes} are accepted"
                    " (operator setting maxSessionBytes): keep large data out of"
                    " spec.template, in a ConfigMap or Secret that the Pod mounts"
                ),
            },
        }
    return {"apiVersion": ADMISSION_REVIEW, "kind": "AdmissionReview", "response": response}


class AdmissionRoutes:
    """The webhook's one route, refusing Sessions over *max_bytes*."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def register(self, router: web.UrlDispatcher) -> None:
        """Add ``POST /admission/sessions`` to *router*."""
        router.add_route("POST", ADMISSION_PATH, self.review)

    async def review(self, request: web.Request) -> web.Response:
        """Answer one AdmissionReview from the apiserver."""
        if request.content_length is None or request.content_length > MAX_REVIEW_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_REVIEW_BYTES, actual_size=request.content_length or 0
            )
        try:
            review = json.loads(await request.read())
        except ValueError as error:
            raise BadRequest("the body is not JSON") from error
        if not isinstance(review, Mapping):
            raise BadRequest("the body is not an AdmissionReview")
        return web.json_response(review_answer(review, self._max_bytes))
