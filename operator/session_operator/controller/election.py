"""Keep (or wait for) the leader Lease; only the leader's control loop writes.

Standby replicas watch and serve heartbeats but take no lifecycle step; when the leader
goes away they take over when its Lease runs out (at once if it released the Lease on a
clean shutdown).

The leader renews every retry period and stops leading when it could not renew within
the renew deadline (client-go's rule). A standby reads the Lease every retry period, or
sooner: its next attempt is set for the moment the Lease it read runs out
(``leadership.next_attempt_in``), so it takes over then, not at the first read after.
When that moment lies is ``leadership.lease_expires_at``: a lease duration from the
record's ``renewTime``, counted from no later than the read that first returned the
record (a ``renewTime`` in the future) and no earlier than one retry period before that
read (a ``renewTime`` further back). Clock skew can thus delay a takeover (to client-go's
time) or advance it by at most one retry period, which the margin between renew deadline
and lease duration covers. After a failed attempt the next one waits a whole retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from session_operator.k8s.errors import KubernetesError
from session_operator.k8s.leader_lease import LeaseApi
from session_operator.leadership import (
    RENEW_DEADLINE,
    RETRY_PERIOD,
    LeaseRecord,
    Observation,
    claimed,
    may_acquire,
    next_attempt_in,
    observe,
    released,
    still_leading,
    unheld_window,
)
from session_operator.outage_rule import OutageWindow

ATTEMPT_TIMEOUT_SECONDS = 5.0
"""How long one read-and-renew of the Lease may take (less while the deadline is nearer)."""
RELEASE_TIMEOUT_SECONDS = 2.0
"""How long a stopping leader may spend giving the Lease up."""

logger = logging.getLogger(__name__)


def replica_identity() -> str:
    """This replica's holder identity: its Pod name (or host) and a random suffix."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """Acquires and renews the Lease; ``leading`` is set while this replica may write."""

    def __init__(
        self,
        leases: LeaseApi,
        identity: str,
        clock: Callable[[], datetime],
        leading: asyncio.Event,
        on_started_leading: Callable[[], None],
        on_unheld: Callable[[OutageWindow], None] = lambda window: None,
    ) -> None:
        self.leading = leading
        self._leases = leases
        self._identity = identity
        self._clock = clock
        self._on_started = on_started_leading
        self._on_unheld = on_unheld
        self._record: LeaseRecord | None = None
        self._observed: Observation | None = None
        self._last_renewal: datetime | None = None

    async def run(self) -> None:
        """Try to acquire or renew every retry period until cancelled; then release."""
        try:
            while True:
                wait = await self._attempt()
                await asyncio.sleep(wait.total_seconds())
        finally:
            self.leading.clear()
            if self._record is not None:
                await self._release()

    async def _attempt(self) -> timedelta:
        """Read the Lease, take or renew it if this replica may; how long to wait before
        the next attempt."""
        now = self._clock()
        try:
            # A call that hangs must not keep this replica leading past its renew deadline,
            # when a standby may take the Lease: no attempt outlasts the time left.
            async with asyncio.timeout(self._time_left(now)):
                await self._read_and_claim(now)
            return next_attempt_in(self._clock(), self._observed, self._identity)
        except KubernetesError as error:
            logger.warning("leader lease not renewed: %s", error)
        except TimeoutError:
            logger.warning("leader lease not renewed: the apiserver did not answer in time")
        if self._last_renewal and not still_leading(self._clock(), self._last_renewal):
            self._follow("renew deadline passed")
        # Not sooner: a Lease seen to run out must not turn a failing call into a busy loop.
        return RETRY_PERIOD

    def _time_left(self, now: datetime) -> float:
        """How long an attempt may take: until the renew deadline while leading, at most
        :data:`ATTEMPT_TIMEOUT_SECONDS`."""
        if self._last_renewal is None or not self.leading.is_set():
            return ATTEMPT_TIMEOUT_SECONDS
        left = (self._last_renewal + RENEW_DEADLINE - now).total_seconds()
        return max(0.0, min(ATTEMPT_TIMEOUT_SECONDS, left))

    async def _read_and_claim(self, now: datetime) -> None:
        """Read the Lease; take or renew it when this replica may, else follow."""
        record, version = await self._leases.read()
        self._observed = None if record is None else observe(now, self._observed, record)
        if not may_acquire(now, self._observed, self._identity):
            self._follow(f"held by {record.holder if record else None}")
            return
        claim = claimed(now, record, self._identity)
        await self._leases.write(claim, version)
        self._record, self._last_renewal = claim, now
        self._observed = Observation(claim, now)
        unheld = unheld_window(now, record, self._identity)
        if unheld is not None:
            self._on_unheld(unheld)
        self._lead()

    def _lead(self) -> None:
        if not self.leading.is_set():
            logger.info("%s is now the leader", self._identity)
            self.leading.set()
            self._on_started()

    def _follow(self, why: str) -> None:
        if self.leading.is_set():
            logger.warning("%s stopped leading: %s", self._identity, why)
            self.leading.clear()

    async def _release(self) -> None:
        """Give the Lease up if this replica holds it. It is read first: a renewal that the
        shutdown cut short may have been written without its answer arriving, and a write
        with the version known before it would be refused, leaving the next leader to wait
        a whole lease duration."""
        with contextlib.suppress(KubernetesError, TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                record, version = await self._leases.read()
                if record is not None and record.holder == self._identity:
                    await self._leases.write(released(record), version)
