"""Unrelated Pods churning in a namespace of their own, as the rest of a real cluster does.

A population of Pods that no Session owns is kept, and replaced at a steady rate: each
replacement deletes one Pod and creates another, two Pod events (an unscheduled Pod is
deleted at once). The operator should never see them: its Pod watch asks the apiserver
for labelled Pods only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

from bench.context import SETUP_CONCURRENCY
from bench.load import bounded_gather
from harness.kube import ApiServer

CHURN_NAMESPACE = "field-churn"
EVENTS_PER_REPLACEMENT = 2


def unrelated_pod(name: str) -> dict[str, Any]:
    """A Pod of someone else's workload: no session label."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "unrelated"}},
        "spec": {
            "containers": [{"name": "main", "image": "registry.invalid/unrelated:1"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


class PodChurn:
    """*population* unrelated Pods in :data:`CHURN_NAMESPACE`, replaced on demand."""

    def __init__(self, api: ApiServer, population: int) -> None:
        self._api = api
        self._population = population
        self._next = itertools.count()
        self._alive: list[str] = []
        self.events = 0
        """Pod events caused so far (creates and deletes)."""

    @property
    def path(self) -> str:
        """The API path of the namespace's Pods."""
        return f"/api/v1/namespaces/{CHURN_NAMESPACE}/pods"

    async def fill(self) -> None:
        """Create the namespace and the population."""
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHURN_NAMESPACE}}
        await self._api.expect("POST", "/api/v1/namespaces", namespace)
        names = [f"unrelated-{next(self._next):06d}" for _ in range(self._population)]
        await bounded_gather(names, self._create, SETUP_CONCURRENCY)

    async def run(self, events_per_second: float, stop: asyncio.Event) -> None:
        """Replace Pods at *events_per_second* Pod events per second until *stop* is set."""
        period = EVENTS_PER_REPLACEMENT / events_per_second
        started = time.monotonic()
        for tick in itertools.count():
            if stop.is_set():
                return
            delay = started + tick * period - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                    return
            await self._replace()

    async def _replace(self) -> None:
        old = self._alive.pop(0)
        await self._api.expect("DELETE", f"{self.path}/{old}", None)
        await self._create(f"unrelated-{next(self._next):06d}")
        self.events += EVENTS_PER_REPLACEMENT

    async def _create(self, name: str) -> None:
        await self._api.expect("POST", self.path, unrelated_pod(name))
        self._alive.append(name)
