"""LIST and WATCH of a collection: a LIST page by page, what it asks for and what it holds
meanwhile; a WATCH's stream cut into lines wherever its chunks end, each line an event, and
the apiserver's ERROR events and 410 Gone raised as the failures a caller acts on."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import aiohttp
import pytest
from kubernetes_asyncio import client

from session_operator.config import Settings
from session_operator.k8s.errors import (
    ApiUnavailable,
    KubernetesError,
    NotFound,
    Rejected,
    ResourceVersionExpired,
)
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import LIST_PAGE_SIZE, ListWatch, WatchEvent

pytestmark = pytest.mark.unit

PATH = "/apis/xg2g.io/v1alpha1/sessions"


class Page(dict[str, Any]):
    """A LIST answer that a weak reference can follow (a plain dict cannot be one's target)."""


def page(names: list[str], token: str = "", version: str = "") -> Page:
    return Page(
        items=[{"metadata": {"name": name}} for name in names],
        metadata={"continue": token, "resourceVersion": version},
    )


class PagedRest(Rest):
    """Answers LISTs with *pages* in turn; notes each query and whether, when it was asked,
    the page answered before was still referenced by anyone."""

    def __init__(self, pages: list[Page]) -> None:
        self._pages = pages
        self._previous: weakref.ref[Page] | None = None
        self.queries: list[dict[str, str]] = []
        self.previous_alive: list[bool] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        assert (method, path) == ("GET", PATH)
        self.queries.append(dict(query or {}))
        if self._previous is not None:
            gc.collect()
            self.previous_alive.append(self._previous() is not None)
        answer = self._pages.pop(0)
        self._previous = weakref.ref(answer)
        return answer


def name_unless_skipped(raw: dict[str, Any]) -> str | None:
    name = str(raw["metadata"]["name"])
    return None if name.startswith("skip") else name


async def test_a_listing_follows_the_continue_tokens_to_the_last_page() -> None:
    rest = PagedRest([page(["a", "b"], "t1"), page(["skip-c", "d"], "t2"), page(["e"], "", "77")])

    listing = await ListWatch(rest, PATH).list(name_unless_skipped)

    assert listing.items == ["a", "b", "d", "e"]
    assert listing.resource_version == "77"
    limit = str(LIST_PAGE_SIZE)
    assert rest.queries == [
        {"limit": limit},
        {"limit": limit, "continue": "t1"},
        {"limit": limit, "continue": "t2"},
    ]


async def test_a_page_is_released_before_the_next_is_asked_for() -> None:
    rest = PagedRest([page(["a"], "t1"), page(["b"], "t2"), page(["c"], "", "9")])

    await ListWatch(rest, PATH).list(name_unless_skipped)

    assert rest.previous_alive == [False, False]


def test_a_page_of_the_largest_admitted_sessions_stays_small() -> None:
    # Held whole while decoded, the page bounds the listing's memory: 6.4 MiB of JSON
    # peaked at 56 MiB once parsed (short entries). 1,000 requests list the 50,000
    # sessions of the benchmark.
    admitted = Settings.model_fields["max_session_bytes"].default
    assert LIST_PAGE_SIZE * admitted <= 8 * 1024 * 1024
    assert 50_000 / LIST_PAGE_SIZE <= 1_000


class ChunkedBody:
    """A response body that arrives in *chunks* as they are (an exception is raised)."""

    def __init__(self, chunks: Sequence[bytes | Exception]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk


class StreamedAnswer:
    """The answer to a streamed GET: a status and a chunked body."""

    def __init__(self, status: int, chunks: Sequence[bytes | Exception]) -> None:
        self.status = status
        self.content = ChunkedBody(chunks)
        self._chunks = chunks

    async def __aenter__(self) -> StreamedAnswer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def read(self) -> bytes:
        return b"".join(chunk for chunk in self._chunks if isinstance(chunk, bytes))


class StreamingClient:
    """An ApiClient whose every call is answered with *answer* (an exception is raised)."""

    def __init__(self, answer: StreamedAnswer | Exception) -> None:
        self._answer = answer
        self.queries: list[list[tuple[str, str]]] = []

    async def call_api(self, path: str, method: str, **options: Any) -> StreamedAnswer:
        assert (method, path) == ("GET", PATH)
        self.queries.append(options["query_params"])
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


def streaming(answer: StreamedAnswer | Exception) -> Rest:
    return Rest(cast(client.ApiClient, StreamingClient(answer)))


async def lines_of(chunks: Sequence[bytes]) -> list[bytes]:
    timeout = aiohttp.ClientTimeout(total=1)
    return [line async for line in streaming(StreamedAnswer(200, chunks)).stream(PATH, [], timeout)]


LONG = b"x" * 200_000  # longer than aiohttp's readline() limit (2**16 bytes)


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\n"], [b"a"]),
        ([b"a\nb\nc\n"], [b"a", b"b", b"c"]),
        ([b'{"ty', b'pe":1}\n'], [b'{"type":1}']),
        ([b"ab", b"cd", b"\n"], [b"abcd"]),
        ([b"a\nb", b"c\nd", b"\n"], [b"a", b"bc", b"d"]),
        ([b"a", b"\nb\n"], [b"a", b"b"]),
        ([b"a\nb"], [b"a", b"b"]),
        ([b"a\n", b"b"], [b"a", b"b"]),
        ([b"ab"], [b"ab"]),
        ([b"\n\na\n\n", b"\n", b"b\n"], [b"a", b"b"]),
        ([b"  \n", b"a\n", b"\t\n"], [b"a"]),
        ([b"a\n", b"  "], [b"a"]),
        ([b"", b"a\n", b""], [b"a"]),
        ([], []),
        ([LONG[:70_000], LONG[70_000:140_000], LONG[140_000:] + b"\n"], [LONG]),
    ],
)
async def test_a_watch_stream_is_cut_into_lines_wherever_its_chunks_end(
    chunks: list[bytes], lines: list[bytes]
) -> None:
    assert await lines_of(chunks) == lines


def event(kind: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def status(code: object, message: str = "") -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "message": message, "code": code}


SESSION = {"metadata": {"name": "s", "resourceVersion": "8"}}
BOOKMARK = {"metadata": {"resourceVersion": "9"}}


async def watched(answer: StreamedAnswer | Exception) -> tuple[list[WatchEvent], Exception]:
    """The events a watch from version 7 yields before it fails, and its failure."""
    events: list[WatchEvent] = []
    try:
        async for seen in ListWatch(streaming(answer), PATH).watch("7"):
            events.append(seen)
    except KubernetesError as failure:
        return events, failure
    raise AssertionError(f"the watch ended without a failure, after {events}")


async def test_a_watch_asks_from_its_version_and_yields_each_event_in_order() -> None:
    stream = StreamingClient(
        StreamedAnswer(200, [event("ADDED", SESSION) + event("BOOKMARK", BOOKMARK)])
    )
    events = [e async for e in ListWatch(Rest(cast(client.ApiClient, stream)), PATH).watch("7")]

    assert events == [WatchEvent("ADDED", SESSION), WatchEvent("BOOKMARK", BOOKMARK)]
    [query] = stream.queries
    assert ("watch", "true") in query
    assert ("resourceVersion", "7") in query
    assert ("allowWatchBookmarks", "true") in query


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (status(410, "too old resource version: 7 (20)"), ResourceVersionExpired),
        (status(500, "etcdserver: leader changed"), ApiUnavailable),
        (status(503, "the watch cache is not ready"), ApiUnavailable),
        (status(429, "too many requests"), ApiUnavailable),
        (status(404, "the server could not find the requested resource"), NotFound),
        (status(403, "sessions.xg2g.io is forbidden"), Rejected),
        (status(None, "no code"), ApiUnavailable),
        (status("410", "a code that is not a number"), ApiUnavailable),
    ],
)
async def test_an_error_event_ends_the_watch_with_the_failure_of_its_status(
    error: dict[str, Any], expected: type[KubernetesError]
) -> None:
    body = [event("ADDED", SESSION), event("ERROR", error), event("MODIFIED", SESSION)]

    events, failure = await watched(StreamedAnswer(200, body))

    assert events == [WatchEvent("ADDED", SESSION)]
    assert type(failure) is expected
    assert error["message"] in str(failure)


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [(410, ResourceVersionExpired), (500, ApiUnavailable), (403, Rejected), (404, NotFound)],
)
async def test_a_watch_refused_at_once_fails_as_its_status_says(
    status_code: int, expected: type[KubernetesError]
) -> None:
    body = json.dumps(status(status_code, "refused")).encode()

    events, failure = await watched(StreamedAnswer(status_code, [body]))

    assert events == []
    assert type(failure) is expected


@pytest.mark.parametrize(
    "line",
    [
        b"not JSON\n",
        b'{"type": "ADDED", "object": {"metadata"\n',
        b'["ADDED", {}]\n',
        b'{"type": "ADDED"}\n',
        b'{"type": "ADDED", "object": "s"}\n',
    ],
)
async def test_a_line_that_is_no_event_is_a_broken_watch(line: bytes) -> None:
    events, failure = await watched(StreamedAnswer(200, [event("ADDED", SESSION), line]))

    assert events == [WatchEvent("ADDED", SESSION)]
    assert type(failure) is ApiUnavailable


@pytest.mark.parametrize(
    "answer",
    [
        aiohttp.ClientConnectionError("connection refused"),
        TimeoutError(),
        StreamedAnswer(200, [event("ADDED", SESSION), aiohttp.ClientPayloadError("reset")]),
        StreamedAnswer(200, [event("ADDED", SESSION), TimeoutError()]),
    ],
)
async def test_a_watch_that_cannot_start_or_breaks_off_is_apiserver_unavailable(
    answer: StreamedAnswer | Exception,
) -> None:
    _, failure = await watched(answer)

    assert type(failure) is ApiUnavailable


async def test_a_label_selector_goes_with_every_page_the_watch_and_the_streaming_list() -> None:
    rest = PagedRest([page(["a"], "t1"), page(["b"], "", "9")])
    await ListWatch(rest, PATH, label_selector="xg2g.io/session").list(name_unless_skipped)
    assert [query.get("labelSelector") for query in rest.queries] == ["xg2g.io/session"] * 2

    stream = StreamingClient(StreamedAnswer(200, [event("BOOKMARK", BOOKMARK)]))
    selected = ListWatch(Rest(cast(client.ApiClient, stream)), PATH, label_selector="app")
    _ = [e async for e in selected.watch("7")]
    _ = [e async for e in selected.watch_list()]
    assert [("labelSelector", "app") in query for query in stream.queries] == [True, True]


async def test_without_a_label_selector_nothing_is_filtered() -> None:
    stream = StreamingClient(StreamedAnswer(200, [event("BOOKMARK", BOOKMARK)]))
    _ = [e async for e in ListWatch(Rest(cast(client.ApiClient, stream)), PATH).watch_list()]
    [query] = stream.queries
    assert not [name for name, _ in query if name == "labelSelector"]
