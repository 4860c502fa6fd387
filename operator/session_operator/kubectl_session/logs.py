"""``logs``: the log of the Pod a Session runs, through the apiserver's ``pods/log``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from session_operator.k8s.errors import ApiUnavailable, error_for_status, translated

LOG_CONNECT_TIMEOUT_SECONDS = 10


async def pod_log(
    api: client.ApiClient,
    namespace: str,
    pod: str,
    *,
    container: str | None,
    follow: bool,
    tail: int | None,
) -> AsyncIterator[bytes]:
    """The log of *pod*'s *container* (``None``: its only one) as it comes, byte for byte;
    with *follow* until the container ends. A refusal raises the matching
    ``KubernetesError`` with the apiserver's message (``container … is waiting to start``)."""
    options: dict[str, Any] = {"follow": follow}
    if container:
        options["container"] = container
    if tail is not None:
        options["tail_lines"] = tail
    limits = aiohttp.ClientTimeout(total=None, sock_connect=LOG_CONNECT_TIMEOUT_SECONDS)
    # Without _preload_content the call answers the HTTP response, not the text its
    # annotations promise.
    call: Awaitable[Any] = client.CoreV1Api(api).read_namespaced_pod_log(
        pod, namespace, _preload_content=False, _request_timeout=limits, **options
    )
    response: aiohttp.ClientResponse = await translated(call)
    async with response:
        # 204: the Pod is on no node yet, so there is no log to read.
        if not 200 <= response.status < 300:
            raise error_for_status(response.status, _message(await response.read()))
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise ApiUnavailable(f"the log stream broke: {error!r}") from error


def _message(raw: bytes) -> str:
    text = raw.decode(errors="replace")
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()
    return str(status.get("message", text)) if isinstance(status, dict) else text.strip()
