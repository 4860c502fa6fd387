"""Open-loop heartbeat clients, one per Session, and the Service they reach the replicas by.

Each client behaves as the project's client library does (``HeartbeatClient.keep_alive``):
it beats, then waits the interval the answer names plus a jitter (:func:`next_beat_delay`),
and backs off on a failure. It holds one keep-alive TLS connection from an address of its own
(127.x.y.z, as each Pod has its own IP), so the API's per-source limits see many sources.

:class:`Endpoints` stands in for the Service: a client's new connection goes to the next
ready replica in turn, a connection stays with its replica, and a replica whose ``/readyz``
fails is taken out until it passes again (as an EndpointSlice drops an unready Pod).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import aiohttp

from bench.field.tenants import Tenant
from bench.load import Latency
from session_operator.heartbeat_client import (
    DEFAULT_INTERVAL_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    Backoff,
    heartbeat_path,
    next_beat_delay,
    retry_after_seconds,
)

NO_ANSWER = 0
"""The status recorded for a beat that got no HTTP answer."""
PROBE_PERIOD_SECONDS = 1.0
CLOSE_PATIENCE_SECONDS = 1.0
"""How long a closed client has to end before it is cancelled again."""
_ENDING = frozenset({404, 410})


def source_address(index: int) -> str:
    """Client *index*'s own loopback address (the whole of 127.0.0.0/8 is local)."""
    return f"127.{10 + index // 62_500}.{index // 250 % 250 + 1}.{index % 250 + 1}"


@dataclass(frozen=True)
class Replica:
    """One operator replica as the clients see it: its API, and its probe."""

    name: str
    api_url: str
    probe_url: str


class Endpoints:
    """The ready replicas, handed out in turn to new connections."""

    def __init__(self, replicas: Sequence[Replica]) -> None:
        self.replicas = list(replicas)
        self._ready = list(replicas)
        self._turn = 0

    def pick(self) -> Replica | None:
        """The replica for a new connection; ``None`` while none is ready."""
        if not self._ready:
            return None
        self._turn = (self._turn + 1) % len(self._ready)
        return self._ready[self._turn]

    def mark_ready(self, ready: Sequence[Replica]) -> None:
        """Hand out only *ready* from now on."""
        self._ready = list(ready)

    async def follow(self, http: aiohttp.ClientSession) -> None:
        """Probe every replica's ``/readyz`` each second and keep the ready ones, until
        cancelled."""
        while True:
            self.mark_ready(
                [replica for replica in self.replicas if await _is_ready(http, replica)]
            )
            await asyncio.sleep(PROBE_PERIOD_SECONDS)


async def _is_ready(http: aiohttp.ClientSession, replica: Replica) -> bool:
    try:
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with http.get(replica.probe_url + "/readyz", timeout=timeout) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@dataclass
class BeatStats:
    """What the clients saw in one window: each beat's duration and answer, by replica, and
    the Sessions whose client was told they had ended."""

    started: float = field(default_factory=time.monotonic)
    seconds_taken: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    by_replica: Counter[str] = field(default_factory=Counter)
    ended: set[str] = field(default_factory=set)
    first_answered: float | None = None
    """When (monotonic) the first beat of the window was answered 200."""

    def take(self, replica: str, seconds: float, status: int) -> None:
        """Record one beat."""
        if status == 200 and self.first_answered is None:
            self.first_answered = time.monotonic()
        self.seconds_taken.append(seconds)
        self.statuses[status] += 1
        self.by_replica[replica] += 1

    @property
    def beats(self) -> int:
        """Beats answered 200."""
        return self.statuses[200]

    @property
    def latency(self) -> Latency:
        """Percentiles of every beat's duration, whatever its answer."""
        return Latency.of(self.seconds_taken)

    @property
    def failures(self) -> dict[int, int]:
        """Beats not answered 200, by status (0: no answer)."""
        return {status: n for status, n in self.statuses.items() if status != 200}


class Fleet:
    """The running clients. :meth:`window` starts a new :class:`BeatStats`."""

    def __init__(self, endpoints: Endpoints, tls: ssl.SSLContext) -> None:
        self._endpoints = endpoints
        self._tls = tls
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = BeatStats()
        self.clients = 0

    @property
    def running(self) -> int:
        """Clients beating now."""
        return len(self._tasks)

    def window(self) -> BeatStats:
        """Start counting afresh; return what the last window counted."""
        done, self.stats = self.stats, BeatStats()
        return done

    def start(
        self, tenants: Sequence[Tenant], spread: float, beat_every: float | None = None
    ) -> None:
        """Start a client for each of *tenants*, first beats spread over *spread* seconds.
        With *beat_every*, a client beats that often (plus the jitter) whatever interval
        the answers name: an application that beats on its own timer."""
        for tenant in tenants:
            address = source_address(self.clients)
            self.clients += 1
            first = random.uniform(0, spread)
            task = asyncio.create_task(self._client(tenant, address, first, beat_every))
            self._tasks.append(task)

    async def close(self, keep: int = 0) -> None:
        """Stop every client but the first *keep* started, closing their connections."""
        stopping, self._tasks = self._tasks[keep:], self._tasks[:keep]
        pending = set(stopping)
        while pending:
            for task in pending:
                task.cancel()
            # Again until it ends: a cancellation that comes as aiohttp's own timeout fires
            # can be lost (aio-libs/aiohttp#5979), and the client then beats on.
            _, pending = await asyncio.wait(pending, timeout=CLOSE_PATIENCE_SECONDS)

    async def _client(
        self, tenant: Tenant, address: str, first_delay: float, beat_every: float | None
    ) -> None:
        connector = aiohttp.TCPConnector(ssl=self._tls, local_addr=(address, 0), limit=1)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        headers = {"Authorization": f"Bearer {tenant.token}"}
        path = heartbeat_path(f"{tenant.session.namespace}/{tenant.session.name}")
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.sleep(first_delay)
            backoff, interval = Backoff(), DEFAULT_INTERVAL_SECONDS
            replica = self._endpoints.pick()
            while True:
                if replica is None:
                    await asyncio.sleep(PROBE_PERIOD_SECONDS)
                    replica = self._endpoints.pick()
                    continue
                started = time.monotonic()
                answer = await _beat(http, replica.api_url + path, headers)
                status = answer.status
                self.stats.take(replica.name, time.monotonic() - started, status)
                if status == 200:
                    backoff.reset()
                    interval = beat_every or answer.interval or interval
                    await asyncio.sleep(next_beat_delay(interval))
                    continue
                if status in _ENDING:
                    self.stats.ended.add(f"{tenant.session.namespace}/{tenant.session.name}")
                    return
                if status == NO_ANSWER:
                    # The connection broke: the Service sends the next one elsewhere.
                    replica = self._endpoints.pick()
                await asyncio.sleep(backoff.delay(interval, answer.retry_after))


class Answer(NamedTuple):
    """What one heartbeat was answered."""

    status: int
    interval: float | None = None
    """The interval a 200 names."""
    retry_after: float | None = None
    """The seconds a refusal's ``Retry-After`` asks to wait."""


async def _beat(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Answer:
    """POST one heartbeat."""
    try:
        async with http.post(url, headers=headers) as response:
            if response.status != 200:
                await response.read()
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                return Answer(response.status, retry_after=wait)
            body = await response.json()
            return Answer(200, float(body["heartbeat_interval"]))
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return Answer(NO_ANSWER)
