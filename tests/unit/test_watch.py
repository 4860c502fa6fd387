"""The LIST of a collection, page by page: what it asks for and what it holds meanwhile."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Mapping
from typing import Any

import pytest

from session_operator.config import Settings
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import LIST_PAGE_SIZE, ListWatch

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
