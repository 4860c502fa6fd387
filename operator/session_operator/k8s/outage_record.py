"""The outage record of lease rule 8 (docs/outages.md): noticed by each replica, shared
through the cluster.

Each replica notices outages from its own apiserver calls (``call_health.CallHealth``).
:class:`OutageMonitor` adds every closed window to the ConfigMap
``session-lease-operator-outages`` (in the leader-election namespace) with a
compare-and-set write, so every replica, and the leader that expires sessions, knows of
it. A new leader adds the span in which nobody held the leader Lease the same way.

A replica writes the record at most once per ``POLL_INTERVAL``. An outage still going on
is written too, as far as it has gone, at every poll while it lasts: a replica that stops
or dies in the middle of one (a restart under a brownout) leaves it recorded to within a
poll, for the replicas that come after. Readers never call the apiserver:
:meth:`OutageMonitor.windows` answers from the record as last polled (every
``POLL_INTERVAL``), the windows this replica saw itself, and the outage going on now, if
any. Until the record has been read once (:attr:`OutageMonitor.loaded`), a replica knows
none of the outages the others saw: it is not ready, and does not lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from session_operator.call_health import CallHealth
from session_operator.k8s.errors import KubernetesError, NotFound, PreconditionFailed
from session_operator.k8s.rest import Rest
from session_operator.outage_rule import OutageWindow, recorded_outages
from session_operator.timestamps import format_timestamp, parse_timestamp

OUTAGES_CONFIGMAP = "session-lease-operator-outages"
WINDOWS_KEY = "windows"

POLL_INTERVAL = timedelta(seconds=2)

UNFINISHED_WITHIN = timedelta(minutes=1)
"""How recently an outage recorded as going on must have been written for a starting
replica to count it on. A longer gap is one in which nobody held the leader Lease past its
15 s, which the new leader records itself; an older mark is a replica that died in an
outage the others did not see."""

logger = logging.getLogger(__name__)


class OutageRecordApi:
    """Read and compare-and-set update the outage ConfigMap."""

    def __init__(self, rest: Rest, namespace: str) -> None:
        self._rest = rest
        self._collection = f"/api/v1/namespaces/{namespace}/configmaps"
        self._namespace = namespace

    async def read(self) -> tuple[list[OutageWindow], str | None]:
        """The recorded windows and the ConfigMap's resourceVersion (``None``: no record)."""
        try:
            body = await self._rest.request("GET", f"{self._collection}/{OUTAGES_CONFIGMAP}")
        except NotFound:
            return [], None
        data = body.get("data") or {}
        return decode_windows(data.get(WINDOWS_KEY, "[]")), body["metadata"]["resourceVersion"]

    async def add(self, new: list[OutageWindow]) -> list[OutageWindow]:
        """Add the windows *new* to the record (merged, bounded); the record as written."""
        while True:
            windows, version = await self.read()
            for window in new:
                windows = recorded_outages(windows, window)
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": OUTAGES_CONFIGMAP, "namespace": self._namespace},
                "data": {WINDOWS_KEY: encode_windows(windows)},
            }
            try:
                if version is None:
                    await self._rest.request("POST", self._collection, body=body)
                else:
                    body["metadata"]["resourceVersion"] = version
                    path = f"{self._collection}/{OUTAGES_CONFIGMAP}"
                    await self._rest.request("PUT", path, body=body)
            except PreconditionFailed:
                continue  # another replica wrote first (409 on create or update): merge again
            return windows


class OutageMonitor:
    """This replica's view of the outages: the shared record, its own, the current one."""

    def __init__(self, health: CallHealth) -> None:
        self.health = health
        """What this replica's calls tell; give it to every ``Rest`` as its observer."""
        self._shared: list[OutageWindow] = []
        self._pending: list[OutageWindow] = []
        self._sending: list[OutageWindow] = []
        self._wake = asyncio.Event()
        self.loaded = asyncio.Event()
        """Set once the shared record has been read (or found absent)."""
        self._unfinished: datetime | None = None
        """The start of an outage recorded as going on when this replica started, which
        lasts until this replica serves heartbeats."""
        self._written_ongoing: OutageWindow | None = None
        """The outage going on as this replica last wrote it: once over, the record must
        say so, though the window that closes it may end earlier (at its last refusal)."""

    def add(self, window: OutageWindow) -> None:
        """Remember *window* and share it with the other replicas."""
        logger.warning("heartbeats could not be accepted during %s", window)
        self._pending = recorded_outages(self._pending, window)
        self._wake.set()

    def windows(self) -> list[OutageWindow]:
        """Every outage known here, the one going on now ending now."""
        self._take_noticed()
        # A window the record marks as going on ends, for the rule, where it was last
        # written: its writer may be gone (a replica that sees it go on says so itself).
        shared = [OutageWindow(window.start, window.end) for window in self._shared]
        known = [*shared, *self._sending, *self._pending]
        ongoing = self._ongoing()
        return [*known, ongoing] if ongoing is not None else known

    def _ongoing(self) -> OutageWindow | None:
        seen = self.health.ongoing()
        if self._unfinished is None:
            return seen
        start = self._unfinished if seen is None else min(seen.start, self._unfinished)
        return OutageWindow(start, self.health.now(), ongoing=True)

    async def run(
        self, record: OutageRecordApi, serving: Callable[[], bool] = lambda: True
    ) -> None:
        """Share new windows through *record* and poll it, until cancelled. *serving*
        tells whether this replica serves heartbeats yet (is ready)."""
        await self._load(record)
        just_read = True
        while True:
            wrote = await self._poll(record, serving, read=not just_read)
            just_read = False
            if wrote:
                # A brownout closes a window every few seconds, and an outage going on
                # is written again as it grows: one write per poll interval at most.
                await asyncio.sleep(POLL_INTERVAL.total_seconds())
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for starts a task, and
            # kopf waits for tasks started after its own before it stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL.total_seconds()):
                    await self._wake.wait()

    async def _poll(
        self, record: OutageRecordApi, serving: Callable[[], bool], *, read: bool
    ) -> bool:
        """Write what is new (and the outage going on) to *record*, else read it if *read*;
        whether anything was written."""
        self._wake.clear()
        self._take_noticed()
        if self._unfinished is not None and serving():
            self.add(OutageWindow(self._unfinished, self.health.now()))
            self._unfinished = None
        pending, self._pending = self._pending, []
        self._sending = pending
        writing = pending
        ongoing = self._ongoing()
        if ongoing is not None:
            writing = recorded_outages(pending, ongoing)
        elif self._written_ongoing is not None:
            over = self._written_ongoing
            writing = recorded_outages(pending, OutageWindow(over.start, over.end))
        try:
            if writing:
                self._shared = await record.add(writing)
                self._written_ongoing = ongoing
            elif read:
                self._shared, _ = await record.read()
        except KubernetesError as error:
            logger.warning("outage record not read or written: %s", error)
            for window in pending:
                self._pending = recorded_outages(self._pending, window)
        self._sending = []
        return bool(writing)

    async def _load(self, record: OutageRecordApi) -> None:
        """Read the record as the replicas before this one left it, before this one writes
        to it, until read; then :attr:`loaded`."""
        while True:
            try:
                self._shared, _ = await record.read()
            except KubernetesError as error:
                logger.warning("outage record not read: %s", error)
                await asyncio.sleep(POLL_INTERVAL.total_seconds())
                continue
            self._continue_unfinished()
            self.loaded.set()
            return

    def _continue_unfinished(self) -> None:
        """At start: if the latest recorded outage is still marked as going on, written
        within :data:`UNFINISHED_WITHIN`, the replica that saw it stopped before it saw its
        end (both replicas restarted in an outage). Nobody could accept heartbeats until a
        replica served them again, so this one takes the outage as lasting until it serves
        them itself (is ready)."""
        latest = max(self._shared, key=lambda window: window.end, default=None)
        if (
            latest is not None
            and latest.ongoing
            and self.health.now() - latest.end <= UNFINISHED_WITHIN
        ):
            logger.warning(
                "the outage %s was recorded as going on and not seen to end: counted until"
                " this replica serves heartbeats",
                latest,
            )
            self._unfinished = latest.start

    def _take_noticed(self) -> None:
        for window in self.health.take_closed():
            self.add(window)


def encode_windows(windows: list[OutageWindow]) -> str:
    """The record as the ConfigMap stores it: a JSON list of ``{start, end}``, with
    ``"ongoing": true`` on a window written while it was going on."""
    return json.dumps([_encoded(window) for window in windows])


def _encoded(window: OutageWindow) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "start": format_timestamp(window.start),
        "end": format_timestamp(window.end),
    }
    if window.ongoing:
        entry["ongoing"] = True
    return entry


def decode_windows(text: str) -> list[OutageWindow]:
    """The windows of a stored record; an unreadable record counts as empty."""
    try:
        entries = json.loads(text)
        return [
            OutageWindow(
                parse_timestamp(entry["start"]),
                parse_timestamp(entry["end"]),
                ongoing=entry.get("ongoing") is True,
            )
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("outage record unreadable, ignored: %s", error)
        return []
