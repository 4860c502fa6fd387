"""The benchmark's own apiserver client and the apiserver's request counters.

One aiohttp session with the admin token, as "one Python aiohttp client" of the scale goals: it
creates and patches Sessions, watches them, and reads ``apiserver_request_total`` from the
apiserver's ``/metrics`` so that every phase can say how many calls and writes it caused.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from session_operator.k8s.rest import JSON
from session_operator.models import PLURAL, sessions_path

MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})
REVIEW_RESOURCES = frozenset({"tokenreviews", "subjectaccessreviews"})


def prometheus_samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named *metric* in a Prometheus text exposition: (labels, value).

    Only *metric*'s lines are parsed: an apiserver's exposition runs to megabytes, and
    the parser, pure Python, would hold the event loop (and every client a benchmark runs
    on it) for about a second."""
    lines = "".join(f"{line}\n" for line in text.splitlines() if line.startswith(metric))
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(lines)
        for sample in family.samples
        if sample.name == metric
    ]


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float:
    """The *quantile* of a Prometheus histogram given as cumulative counts by upper bound,
    interpolated within its bucket as PromQL's ``histogram_quantile`` does; ``nan`` when
    empty. A quantile in the ``+Inf`` bucket is the largest finite bound."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


RequestKey = tuple[str, str, str, str]
"""(verb, resource, subresource, code) of ``apiserver_request_total``."""


@dataclass(frozen=True)
class ApiCalls:
    """The requests the apiserver served in a window, in the categories the report needs.

    Writes are successful mutating requests; refused writes are the 409/422 answers to
    compare-and-set writes that lost. Watches are not counted (they are long-running).
    """

    status_writes: int
    object_writes: int
    event_writes: int
    refused_writes: int
    reads: int
    reviews: int
    token_reviews: int = 0
    access_reviews: int = 0
    """The two kinds of :attr:`reviews`: TokenReviews and SubjectAccessReviews."""
    pod_writes: int = 0
    """Successful writes of Pods (creates, deletes), counted apart from :attr:`writes`."""

    @property
    def writes(self) -> int:
        """Successful writes of Sessions (status and object) and Events."""
        return self.status_writes + self.object_writes + self.event_writes

    @property
    def session_calls(self) -> int:
        """Every non-watch request on Sessions and Events, refused ones included."""
        return self.writes + self.refused_writes + self.reads

    @property
    def calls(self) -> int:
        """Every non-watch request on Sessions, Events, TokenReviews, SubjectAccessReviews."""
        return self.session_calls + self.reviews

    def as_dict(self) -> dict[str, int]:
        """The counts by name, for the JSON report."""
        return {
            "status_writes": self.status_writes,
            "object_writes": self.object_writes,
            "event_writes": self.event_writes,
            "refused_writes": self.refused_writes,
            "reads": self.reads,
            "reviews": self.reviews,
            "token_reviews": self.token_reviews,
            "access_reviews": self.access_reviews,
            "pod_writes": self.pod_writes,
            "writes": self.writes,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot of ``apiserver_request_total``, summed over the labels we do not use, and
    of the apiserver's own duration histogram of Session status patches."""

    counts: Mapping[RequestKey, float]
    status_patch_buckets: Mapping[float, float] = field(default_factory=dict)
    """``apiserver_request_duration_seconds`` of PATCH sessions/status: count by bound."""

    @classmethod
    def parse(cls, text: str) -> RequestCounts:
        """Read the counter and the histogram out of the apiserver's ``/metrics`` text."""
        counts: dict[RequestKey, float] = {}
        for labels, value in prometheus_samples(text, "apiserver_request_total"):
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
                labels.get("code", ""),
            )
            counts[key] = counts.get(key, 0.0) + value
        buckets: dict[float, float] = {}
        for labels, value in prometheus_samples(text, "apiserver_request_duration_seconds_bucket"):
            if (labels.get("verb"), labels.get("resource"), labels.get("subresource")) == (
                "PATCH",
                PLURAL,
                "status",
            ):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        return cls(counts, buckets)

    def status_patch_p99_ms(self, before: RequestCounts) -> float:
        """The p99, in ms, of the Session status patches the apiserver served since *before*,
        as the apiserver timed them (from its histogram; ``nan`` if it served none)."""
        served = {
            bound: count - before.status_patch_buckets.get(bound, 0.0)
            for bound, count in self.status_patch_buckets.items()
        }
        return 1000 * histogram_quantile(0.99, served)

    def since(self, before: RequestCounts) -> ApiCalls:
        """What the apiserver served between *before* and this snapshot."""
        status_writes = object_writes = event_writes = refused = reads = reviews = 0.0
        token_reviews = access_reviews = pod_writes = 0.0
        for key, value in self.counts.items():
            verb, resource, subresource, code = key
            delta = value - before.counts.get(key, 0.0)
            if delta <= 0 or verb == "WATCH":
                continue
            succeeded = code.startswith("2")
            if resource == PLURAL:
                if verb in MUTATING_VERBS and succeeded:
                    if subresource == "status":
                        status_writes += delta
                    else:
                        object_writes += delta
                elif verb in MUTATING_VERBS and code in ("409", "422"):
                    refused += delta
                elif verb in ("GET", "LIST"):
                    reads += delta
            elif resource == "events" and verb in MUTATING_VERBS and succeeded:
                event_writes += delta
            elif resource == "pods" and verb in MUTATING_VERBS and succeeded:
                pod_writes += delta
            elif resource in REVIEW_RESOURCES:
                reviews += delta
                if resource == "tokenreviews":
                    token_reviews += delta
                else:
                    access_reviews += delta
        return ApiCalls(
            int(status_writes),
            int(object_writes),
            int(event_writes),
            int(refused),
            int(reads),
            int(reviews),
            int(token_reviews),
            int(access_reviews),
            int(pod_writes),
        )


class ApiServerError(RuntimeError):
    """The apiserver answered a benchmark request with an unexpected status."""


class ApiServer:
    """Calls to the apiserver as the admin user, over one pooled aiohttp session."""

    def __init__(self, server: str, token: str, ca_file: Path, connections: int = 128) -> None:
        self.server = server
        self._headers = {"Authorization": f"Bearer {token}", "Accept": JSON}
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiServer:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=60),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The underlying session (open between ``__aenter__`` and ``__aexit__``)."""
        assert self._session is not None, "use ApiServer as an async context manager"
        return self._session

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        content_type: str = JSON,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return the status and the decoded JSON body (``{}`` if none)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.http.request(
            method, self.server + path, data=data, headers=headers, params=params
        ) as response:
            raw = await response.read()
            try:
                decoded = json.loads(raw) if raw else {}
            except ValueError:
                decoded = {}
            return response.status, decoded if isinstance(decoded, dict) else {}

    async def send(self, method: str, path: str, body: object, content_type: str = JSON) -> int:
        """Send one request and read the answer without decoding it; return the status."""
        headers = {"Content-Type": content_type}
        async with self.http.request(
            method, self.server + path, data=json.dumps(body), headers=headers
        ) as response:
            await response.read()
            return response.status

    async def expect(
        self,
        method: str,
        path: str,
        body: object = None,
        content_type: str = JSON,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`call`, but a non-2xx answer raises :class:`ApiServerError`."""
        status, decoded = await self.call(method, path, body, content_type, params)
        if not 200 <= status < 300:
            raise ApiServerError(f"{method} {path}: {status} {decoded.get('message', decoded)}")
        return decoded

    async def text(self, path: str) -> str:
        """GET a non-JSON document (``/metrics``)."""
        async with self.http.get(self.server + path) as response:
            if response.status != 200:
                raise ApiServerError(f"GET {path}: {response.status}")
            return await response.text()

    async def request_counts(self) -> RequestCounts:
        """A snapshot of ``apiserver_request_total``."""
        return RequestCounts.parse(await self.text("/metrics"))

    async def resource_version(self, namespace: str) -> str:
        """The current resourceVersion of the Sessions of *namespace* (a start for a watch)."""
        listing = await self.expect("GET", sessions_path(namespace), params={"limit": "1"})
        return str(listing["metadata"]["resourceVersion"])

    async def watch(
        self, namespace: str, resource_version: str
    ) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """Watch the Sessions of *namespace* from *resource_version*: (wall time seen, event).

        A dropped connection, or an ``ERROR`` event (yielded, e.g. the watch cache not yet
        at the version asked for), is resumed from the last version seen;
        :class:`WatchExpired` is raised when that version is too old to resume from (410).
        """
        version = resource_version
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        while True:
            params = {
                "watch": "1",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "900",
            }
            try:
                async with self.http.get(
                    self.server + sessions_path(namespace), params=params, timeout=timeout
                ) as response:
                    if response.status == 410:
                        raise WatchExpired(f"watch {namespace} from {version}: 410")
                    if response.status != 200:
                        raise ApiServerError(f"watch {namespace}: {response.status}")
                    async for line in response.content:
                        seen = time.time()
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                raise WatchExpired(f"watch {namespace}: {obj.get('message')}")
                            yield seen, event
                            break  # e.g. "Too large resource version": ask again shortly
                        version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                        yield seen, event
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                pass
            await asyncio.sleep(0.2)


class WatchExpired(ApiServerError):
    """The version a watch should resume from is gone (410): list again."""
