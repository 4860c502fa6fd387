"""One typed way to call the apiserver: JSON in, JSON out, errors translated.

Built on kubernetes_asyncio's ApiClient (kubeconfig, in-cluster credentials, TLS,
token refresh), without its generated models: the operator works with plain JSON
bodies and Session models of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from kubernetes_asyncio import client

from session_operator.k8s.errors import ApiUnavailable, KubernetesError, translated

if TYPE_CHECKING:
    from session_operator.k8s.outages import OutageMonitor

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class Rest:
    """Raw REST calls through an authenticated ApiClient.

    *timeout* bounds each call, in seconds (``None``: no limit). The heartbeat API uses a
    short one, so that a stalled apiserver is answered with ``ApiUnavailable`` in time.
    *outages*, if given, is told of every call, to notice when the apiserver is out of
    reach (SPEC §2 rule 8).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: float | None = None,
        outages: OutageMonitor | None = None,
    ) -> None:
        self._client = api_client
        self._timeout = timeout
        self._outages = outages

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
        if self._outages is None:
            return cast(dict[str, Any], await translated(call))
        token = self._outages.call_started()
        try:
            answer = await translated(call)
        except ApiUnavailable:
            self._outages.call_ended(token, reachable=False)
            raise
        except KubernetesError:
            self._outages.call_ended(token, reachable=True)  # a 404, a 422: it answered
            raise
        except BaseException:
            self._outages.call_abandoned(token)  # cancelled: it tells nothing
            raise
        self._outages.call_ended(token, reachable=True)
        return cast(dict[str, Any], answer)
