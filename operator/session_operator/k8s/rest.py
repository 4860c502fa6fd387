"""One typed way to call the apiserver: JSON in, JSON out, errors translated.

Built on kubernetes_asyncio's ApiClient (kubeconfig, in-cluster credentials, TLS,
token refresh), without its generated models: the operator works with plain JSON
bodies and Session models of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Protocol, cast

import aiohttp
from kubernetes_asyncio import client

from session_operator.k8s.errors import (
    ApiUnavailable,
    KubernetesError,
    error_for_status,
    translated,
)

LATE_CALLS = 32
"""How many calls past their answer deadline a :class:`Rest` lets run on at once (half the
connection pool); a call beyond that is cancelled at its deadline."""

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

    *timeout* bounds each call, in seconds (``None``: no limit). *answer_within*, if given,
    is a shorter deadline for the caller: past it the caller gets ``ApiUnavailable`` (the
    heartbeat API answers 503 in time), while the call itself runs on, up to *timeout*.
    A call cancelled mid-answer closes its connection, and an apiserver that is slow
    because it is loaded would then pay a TLS handshake for every call that came back
    late; a call left to finish keeps its connection, and its write, if it lands, counts.
    At most :data:`LATE_CALLS` run on at once; past that a late call is cancelled.

    *observer*, if given, is told of every request (not of streams), to notice when the
    apiserver is out of reach: a call past its answer deadline counts as failed then, and
    answered when its answer comes.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: float | None = None,
        answer_within: float | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._client = api_client
        self._timeout = timeout
        self._answer_within = answer_within
        self._observer = observer
        self._late: set[asyncio.Future[Any]] = set()

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
        token = self._observer.call_started() if self._observer is not None else None
        answer = self._observed(call, token)
        if self._answer_within is None:
            return cast(dict[str, Any], await answer)
        return cast(dict[str, Any], await self._within_deadline(answer, token))

    async def _observed(self, call: Awaitable[Any], token: int | None) -> Any:
        try:
            answer = await translated(call)
        except ApiUnavailable:
            self._ended(token, reachable=False)
            raise
        except KubernetesError:
            self._ended(token, reachable=True)  # a 404, a 422: it answered
            raise
        except BaseException:
            if self._observer is not None and token is not None:
                self._observer.call_abandoned(token)  # cancelled: it tells nothing
            raise
        self._ended(token, reachable=True)
        return answer

    def _ended(self, token: int | None, *, reachable: bool) -> None:
        if self._observer is not None and token is not None:
            self._observer.call_ended(token, reachable=reachable)

    async def _within_deadline(self, answer: Awaitable[Any], token: int | None) -> Any:
        assert self._answer_within is not None
        outcome = asyncio.ensure_future(_settled(answer))
        try:
            async with asyncio.timeout(self._answer_within):
                value, error = await asyncio.shield(outcome)
        except TimeoutError:
            self._ended(token, reachable=False)
            self._run_late(outcome)
            raise ApiUnavailable(
                f"the apiserver gave no answer within {self._answer_within:g} s"
            ) from None
        except asyncio.CancelledError:
            self._run_late(outcome)  # the caller went away; the call may still land
            raise
        if error is not None:
            raise error
        return value

    def _run_late(self, outcome: asyncio.Future[Any]) -> None:
        if outcome.done():
            return
        if len(self._late) >= LATE_CALLS:
            outcome.cancel()
        self._late.add(outcome)
        outcome.add_done_callback(self._late.discard)

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


async def _settled(answer: Awaitable[Any]) -> tuple[Any, Exception | None]:
    """*answer*'s value, or the error it raised. A call left to run late ends in neither
    an error nobody takes (asyncio would log it as never retrieved) nor one raised again at
    exit (kopf, as it stops, awaits the tasks started after it and raises their errors)."""
    try:
        return await answer, None
    except Exception as error:  # handed to the caller, if one still waits
        return None, error


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
