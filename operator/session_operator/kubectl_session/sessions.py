"""The apiserver calls of ``kubectl session``: Sessions, their Events and their Pod.

Every call goes through :class:`session_operator.k8s.rest.Rest`, so a failure arrives as
one of the ``KubernetesError`` kinds; a Session that is not there is a
:class:`CommandError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from session_operator.k8s.errors import ApiUnavailable, NotFound, error_for_status
from session_operator.k8s.rest import MERGE_PATCH, Rest
from session_operator.kubectl_session.errors import CommandError
from session_operator.models import KIND, SESSION_LABEL, sessions_path

LIST_PAGE_SIZE = 500
WATCH_CONNECT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Change:
    """One event of a watch of one Session: ``ADDED``, ``MODIFIED`` or ``DELETED``, and
    the Session as it is after it."""

    type: str
    session: Mapping[str, Any]


class Sessions:
    """The Sessions of *namespace* (and, for :meth:`select`, of every namespace)."""

    def __init__(self, rest: Rest, namespace: str) -> None:
        self._rest = rest
        self.namespace = namespace

    async def get(self, name: str) -> dict[str, Any]:
        """The Session *name* as stored now."""
        try:
            return await self._rest.request("GET", sessions_path(self.namespace, name))
        except NotFound:
            raise self.not_found(name) from None

    async def select(self, *, all_namespaces: bool, selector: str | None) -> list[dict[str, Any]]:
        """The Sessions of the namespace (or of all), matching the label *selector*."""
        path = sessions_path(None if all_namespaces else self.namespace)
        query = {"limit": str(LIST_PAGE_SIZE)}
        if selector:
            query["labelSelector"] = selector
        items: list[dict[str, Any]] = []
        while True:
            page = await self._rest.request("GET", path, query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def request_stop(self, name: str) -> dict[str, Any]:
        """Set ``spec.stop: true`` (the operator then stops it, ``USER_STOPPED``); the
        Session as written."""
        return await self._patch_spec(name, {"stop": True})

    async def set_hold(self, name: str, until: str | None) -> dict[str, Any]:
        """Set ``spec.hold.until`` to *until* (RFC 3339), or remove ``spec.hold``
        (``None``), as the documented ``kubectl patch`` lines do; the Session as written.
        A hold the admission webhook refuses is a ``Rejected`` saying why."""
        return await self._patch_spec(name, {"hold": None if until is None else {"until": until}})

    async def _patch_spec(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Merge *spec* into the Session's spec; the Session as written."""
        try:
            return await self._rest.request(
                "PATCH",
                sessions_path(self.namespace, name),
                body={"spec": spec},
                content_type=MERGE_PATCH,
            )
        except NotFound:
            raise self.not_found(name) from None

    async def events(self, session: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Events about *session* (this object, by uid: not an older one of its name),
        as ``kubectl describe`` finds them."""
        uid = session["metadata"]["uid"]
        answer = await self._rest.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/events",
            query={"fieldSelector": f"involvedObject.kind={KIND},involvedObject.uid={uid}"},
        )
        return list(answer.get("items") or [])

    async def workload_pod(self, session: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Pod the session runs: labelled with its name and controlled by it (the
        operator's release deletes exactly those); ``None`` when there is none."""
        metadata = session["metadata"]
        answer = await self._rest.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            query={"labelSelector": f"{SESSION_LABEL}={metadata['name']}"},
        )
        for pod in answer.get("items") or []:
            owners = (pod.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("controller") and o.get("uid") == metadata["uid"] for o in owners):
                return dict(pod)
        return None

    async def watch(
        self, name: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Change]:
        """The changes of Session *name* after *resource_version*, until the server ends
        the watch (after *timeout_seconds*). A version the apiserver no longer has raises
        ``ResourceVersionExpired``: read the Session again and watch from there."""
        query = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={name}"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        limits = aiohttp.ClientTimeout(
            total=timeout_seconds + WATCH_CONNECT_TIMEOUT_SECONDS,
            sock_connect=WATCH_CONNECT_TIMEOUT_SECONDS,
        )
        async for line in self._rest.stream(sessions_path(self.namespace), query, limits):
            try:
                event = json.loads(line)
            except ValueError as error:
                raise ApiUnavailable(
                    f"the watch sent a line that is not JSON: {line[:200]!r}"
                ) from error
            body = event.get("object") or {}
            if event.get("type") == "ERROR":
                code = body.get("code")
                raise error_for_status(
                    code if isinstance(code, int) else 500, str(body.get("message"))
                )
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                yield Change(str(event["type"]), body)

    def not_found(self, name: str) -> CommandError:
        """The error of a Session *name* that is not in the namespace."""
        return CommandError(f'session "{name}" not found in namespace "{self.namespace}"')
