"""When the apiserver was out of reach, as one replica's own calls tell (pure).

Every apiserver call reports here (through ``k8s.rest.Rest``): a call that fails as
unavailable, or hangs longer than :data:`STALLED_AFTER`, opens an outage; the next call
that is answered closes it. The heartbeat API reports here too when it refuses a heartbeat
for want of capacity (its queue of token and access reviews is full, as after a restart
under thousands of clients): heartbeats cannot be accepted then either, though every
apiserver call is answered. Such refusals make one outage from the first to the last,
closed once none has come for :data:`REFUSALS_QUIET`. Time is read from the clock passed
in, so every boundary is a unit test. ``k8s.outage_record.OutageMonitor`` shares the
windows with the other replicas.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

from session_operator.outage_rule import OutageWindow

STALLED_AFTER = timedelta(seconds=5)
"""A call unanswered for this long counts as an outage from when it was sent. A call
that fails (unreachable, or the heartbeat API's 2 s timeout) counts at once; a slow
answer only past this, so an apiserver that is merely busy is not taken for down."""


REFUSALS_QUIET = timedelta(seconds=1)
"""Refusals for want of capacity less than this apart are one outage; it ends at the last
refusal once this long has passed without another (clients are told to retry in a second)."""


class CallHealth:
    """The outages one replica's calls have seen: closed windows, and the one going on."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._failing_since: datetime | None = None
        self._in_flight: dict[int, datetime] = {}
        self._tokens = itertools.count()
        self._closed: list[OutageWindow] = []
        self._refusing: OutageWindow | None = None

    def call_started(self) -> int:
        """An apiserver call is sent now; pass the token to :meth:`call_ended`."""
        token = next(self._tokens)
        self._in_flight[token] = self._clock()
        return token

    def call_ended(self, token: int, *, reachable: bool) -> None:
        """The call came back: answered (*reachable*), or failed as unavailable."""
        sent = self._in_flight.pop(token, None)
        now = self._clock()
        if not reachable:
            start = sent if sent is not None else now
            if self._failing_since is None or start < self._failing_since:
                self._failing_since = start
            return
        if self._failing_since is not None:
            start = self._failing_since
        elif sent is not None and now - sent >= STALLED_AFTER:
            start = sent
        else:
            return
        self._failing_since = None
        self._closed.append(OutageWindow(start, now))

    def call_abandoned(self, token: int) -> None:
        """The call was cancelled before an answer; it tells nothing."""
        self._in_flight.pop(token, None)

    def now(self) -> datetime:
        """The time on the clock these calls are timed by."""
        return self._clock()

    def heartbeat_refused(self) -> None:
        """A heartbeat was refused now for want of capacity, not for anything its caller
        did: an outage from the first such refusal to the last."""
        now = self._clock()
        if self._refusing is None:
            self._refusing = OutageWindow(now, now)
        elif now - self._refusing.end < REFUSALS_QUIET:
            self._refusing = OutageWindow(self._refusing.start, now)
        else:
            self._closed.append(self._refusing)
            self._refusing = OutageWindow(now, now)

    def take_closed(self) -> list[OutageWindow]:
        """The outages that ended since the last call, oldest first."""
        if self._refusing is not None and self._clock() - self._refusing.end >= REFUSALS_QUIET:
            self._closed.append(self._refusing)
            self._refusing = None
        closed, self._closed = self._closed, []
        return closed

    def ongoing(self) -> OutageWindow | None:
        """The outage going on now (ending now), if any."""
        now = self._clock()
        stalled = [sent for sent in self._in_flight.values() if now - sent >= STALLED_AFTER]
        starts = [*stalled, *([self._failing_since] if self._failing_since else [])]
        if self._refusing is not None and now - self._refusing.end < REFUSALS_QUIET:
            starts.append(self._refusing.start)
        return OutageWindow(min(starts), now, ongoing=True) if starts else None
