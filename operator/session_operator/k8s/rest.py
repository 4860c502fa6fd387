"""One typed way to call the apiserver: JSON in, JSON out, errors translated.

Built on kubernetes_asyncio's ApiClient (kubeconfig, in-cluster credentials, TLS,
token refresh), without its generated models: the operator works with plain JSON
bodies and Session models of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, cast

import aiohttp
from kubernetes_asyncio import client

from session_operator.k8s.errors import (
    ApiUnavailable,
    KubernetesError,
    error_for_status,
    translated,
)

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class CallObserver(Protocol):
    """Told of every request (``call_health.CallHealth`` is one)."""

    def call_started(self) -> int:
        """A call is sent now; returns a token for the two below."""

    def call_ended(self, token: int, *, reachable: bool) -> None:
        """The call was answered (*reachable*), or failed as unavailable."""

    def call_abandoned(self, token: int) -> None:
        """The call was cancelled before an answer."""


class Rest:
    """Raw REST calls through an authenticated ApiClient.

    *timeout* bounds each call, in seconds (``None``: no limit). The heartbeat API uses a
    short one, so that a stalled apiserver is answered with ``ApiUnavailable`` in time.
    *observer*, if given, is told of every request (not of streams), to notice when the
    apiserver is out of reach.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: float | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._client = api_client
        self._timeout = timeout
        self._observer = observer

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the decoded JSON object or raise a ``KubernetesError``."""
        call = self._client.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=self._timeout,
        )
        if self._observer is None:
            return cast(dict[str, Any], await translated(call))
        token = self._observer.call_started()
        try:
            answer = await translated(call)
        except ApiUnavailable:
            self._observer.call_ended(token, reachable=False)
            raise
        except KubernetesError:
            self._observer.call_ended(token, reachable=True)  # a 404, a 422: it answered
            raise
        except BaseException:
            self._observer.call_abandoned(token)  # cancelled: it tells nothing
            raise
        self._observer.call_ended(token, reachable=True)
        return cast(dict[str, Any], answer)

    async def stream(
        self, path: str, query: Sequence[tuple[str, str]], limits: aiohttp.ClientTimeout
    ) -> AsyncIterator[bytes]:
        """GET *path* and yield the answer's lines as they come (a watch: one JSON event
        per line), until the server ends it. Failures raise the same errors as
        :meth:`request`; a broken stream is ``ApiUnavailable``."""
        try:
            response: aiohttp.ClientResponse = await self._client.call_api(
                path,
                "GET",
                query_params=list(query),
                header_params={"Accept": JSON},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=limits,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error
        async with response:
            if response.status != 200:
                raise error_for_status(response.status, await _text(response))
            try:
                async for line in _lines(response.content):
                    yield line
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                raise ApiUnavailable(f"stream broke: {error!r}") from error


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    # One JSON object per line; objects may be larger than aiohttp's readline() limit.
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


async def _text(response: aiohttp.ClientResponse) -> str:
    try:
        return (await response.read()).decode(errors="replace")[:1000]
    except (TimeoutError, aiohttp.ClientError, OSError):
        return response.reason or ""
