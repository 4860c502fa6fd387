"""The heartbeat and the session read of docs/API_CONTRACT.md, on top of the lease rules.

Checked in this order: the caller (401, done by the route) → may it beat the session
(403) → does the session exist (404; on the sessionID path the namespace is known only
after the lookup, so there 404 comes before 403) → has it a lease (409) → is it live and
unexpired (410; a lease that lapsed in an outage of the system is given its grace first,
lease rule 8) → within the interval, acknowledged without a write (200) → else one
compare-and-set status write (200). A write that loses re-reads the Session and decides
again from the fresh object, so a heartbeat never revives a session stopped meanwhile.
Every answer tells the seconds the lease has left and whether it is in its expiry warning
window; a heartbeat that moves a warned lease says in the same write what ``LeaseValid``
says now (docs/lease-rules.md, Expiry warning).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from session_operator.api.auth import Caller, HeartbeatAuthorizer
from session_operator.api.errors import (
    LeaseNotInitialised,
    SessionGone,
    SessionNotFound,
    WriteContention,
)
from session_operator.api.lookup import SessionLookup
from session_operator.conditions import LEASE_VALID, merged_conditions
from session_operator.expiry_warning import (
    ENDED,
    EXPIRING_SOON,
    Countdown,
    countdown,
    lease_valid_after_heartbeat,
)
from session_operator.k8s.errors import ApiUnavailable, NotFound, PreconditionFailed
from session_operator.k8s.sessions import SessionApi
from session_operator.lease import (
    LIVE_STATES,
    HeartbeatExtend,
    HeartbeatGone,
    HeartbeatNoop,
    Lease,
    SessionState,
    StopReason,
    decide_heartbeat,
    lease_end,
    observed_state,
)
from session_operator.models import Session, SessionRef
from session_operator.outage_rule import OutageWindow, outage_grace
from session_operator.timestamps import format_timestamp

# Decisions per heartbeat: a re-read after each lost write or expiry seen in the cache.
MAX_DECISIONS = 4

SessionAddress: TypeAlias = SessionRef | str
"""A session as a request names it: namespace/name, or its ``status.sessionID``."""


@dataclass(frozen=True)
class HeartbeatAck:
    """An accepted heartbeat: the lease now runs until *lease_expires_at* (the end of a
    hold in force, if later)."""

    session_id: str
    lease_expires_at: datetime
    heartbeat_interval: int
    extended: bool
    """False when acknowledged inside the interval, without a write."""
    countdown: Countdown


@dataclass(frozen=True)
class SessionView:
    """A session as the API reports it: when its lease ends (a hold's end, if later), and
    the state at read time."""

    session_id: str
    ref: SessionRef
    state: SessionState
    stop_reason: StopReason | None
    lease_expires_at: datetime
    last_heartbeat: datetime | None
    heartbeat_interval: int
    countdown: Countdown


def heartbeat_patch(raw: Mapping[str, Any], decision: HeartbeatExtend) -> list[dict[str, Any]]:
    """The compare-and-set JSON patch that records an accepted heartbeat on ``/status``.

    *raw* is the status as read (:attr:`Session.raw_status`). The patch tests its state,
    expiry and last heartbeat (absent before the first one), so it fails with 422 if the
    operator stopped the session, another heartbeat was written, or anything else moved
    the expiry since it was read: a lease never shrinks because of a stale read.
    """
    guards = ["state", "leaseExpiresAt", *(["lastHeartbeat"] if "lastHeartbeat" in raw else [])]
    return [
        *({"op": "test", "path": f"/status/{field}", "value": raw[field]} for field in guards),
        {
            "op": "add",
            "path": "/status/lastHeartbeat",
            "value": format_timestamp(decision.last_heartbeat),
        },
        {
            "op": "replace",
            "path": "/status/leaseExpiresAt",
            "value": format_timestamp(decision.expires_at),
        },
    ]


def lease_valid_patch(
    session: Session, now: datetime, end: datetime, window: timedelta
) -> list[dict[str, Any]]:
    """What a heartbeat at *now* that moves the lease's end to *end* writes to ``LeaseValid``,
    in its one patch (nothing when the session has no such condition).

    A lease warned as expiring soon is told again: out of the warning *window*, or with its
    new end. With the warning on, the patch also tests the condition's reason as read, so
    that a warning written meanwhile fails the write: it is decided again from the fresh
    object, which has the warning to take back.
    """
    found = next(
        (
            (index, condition)
            for index, condition in enumerate(session.conditions)
            if condition.get("type") == LEASE_VALID
        ),
        None,
    )
    if found is None:
        return []
    index, condition = found
    path = f"/status/conditions/{index}"
    reason = condition.get("reason")
    test = {"op": "test", "path": f"{path}/reason", "value": reason}
    if reason == EXPIRING_SOON:
        update = lease_valid_after_heartbeat(now, end, session.status.lifetime_ends_at, window)
        (told,) = merged_conditions([condition], [update], now, session.generation)
        return [test, {"op": "replace", "path": path, "value": told}]
    return [test] if window > timedelta(0) else []


class HeartbeatService:
    """Heartbeats and reads for authenticated callers."""

    def __init__(
        self,
        lookup: SessionLookup,
        authorizer: HeartbeatAuthorizer,
        sessions: SessionApi,
        clock: Callable[[], datetime],
        outages: Callable[[], Sequence[OutageWindow]] = tuple,
        *,
        expiry_warning: timedelta,
    ) -> None:
        """*expiry_warning* is the window before a lease's end in which answers say it is
        expiring soon (zero: never)."""
        self._lookup = lookup
        self._authorizer = authorizer
        self._sessions = sessions
        self._clock = clock
        self._outages = outages
        self._expiry_warning = expiry_warning

    async def beat(self, caller: Caller, address: SessionAddress) -> HeartbeatAck:
        """Accept a heartbeat from *caller* for the session at *address*, or raise why not."""
        session = await self._find(caller, address)
        fresh = False
        for _ in range(MAX_DECISIONS):
            now = self._clock()
            lease = self._with_outage_grace(now, session)
            decision = decide_heartbeat(now, lease)
            if isinstance(decision, HeartbeatGone):
                if lease.state in LIVE_STATES and not fresh:
                    # Expired by the cached copy: a heartbeat may have extended it since.
                    session, fresh = await self._reread(session), True
                    continue
                raise SessionGone(
                    _session_id(session), decision.state, decision.stop_reason, str(address)
                )
            if isinstance(decision, HeartbeatNoop):
                return self._ack(session, now, decision.expires_at, extended=False)
            end = lease_end(replace(lease, expires_at=decision.expires_at))
            patch = [
                *heartbeat_patch(session.raw_status, decision),
                *lease_valid_patch(session, now, end, self._expiry_warning),
            ]
            try:
                written = await self._sessions.patch_status(session.ref, patch)
            except PreconditionFailed:
                session, fresh = await self._reread(session), True
                continue
            except NotFound as error:
                raise SessionNotFound(f"no session {session.ref}") from error
            self._lookup.remember(written)
            return self._ack(written, now, end, extended=True)
        raise WriteContention(f"the status of {session.ref} kept changing; retry")

    async def read(self, caller: Caller, address: SessionAddress) -> SessionView:
        """The session at *address* as the API reports it at this instant."""
        session = await self._find(caller, address)
        now = self._clock()
        lease = self._with_outage_grace(now, session)
        state, stop_reason = observed_state(now, lease)
        end = lease_end(lease)
        return SessionView(
            session_id=_session_id(session),
            ref=session.ref,
            state=state,
            stop_reason=stop_reason,
            lease_expires_at=end,
            last_heartbeat=lease.last_heartbeat,
            heartbeat_interval=_interval_seconds(session),
            countdown=countdown(now, end, self._expiry_warning) if state in LIVE_STATES else ENDED,
        )

    def _ack(
        self, session: Session, now: datetime, end: datetime, *, extended: bool
    ) -> HeartbeatAck:
        """The answer to a heartbeat acknowledged at *now*: the lease runs until *end*."""
        return HeartbeatAck(
            session_id=_session_id(session),
            lease_expires_at=end,
            heartbeat_interval=_interval_seconds(session),
            extended=extended,
            countdown=countdown(now, end, self._expiry_warning),
        )

    def _with_outage_grace(self, now: datetime, session: Session) -> Lease:
        """The lease, running until its grace if it lapsed in an outage of the system;
        the expirer grants the same grace, and a heartbeat writes it (or more)."""
        lease = _lease(session)
        grace = outage_grace(now, lease, session.created_at, self._outages())
        return lease if grace is None else replace(lease, expires_at=grace.expires_at)

    async def _reread(self, session: Session) -> Session:
        fresh = await self._lookup.reread(session.ref)
        if fresh.uid != session.uid:
            # Deleted and created again under the same name: not the session addressed.
            raise SessionNotFound(f"session {session.ref} was deleted")
        return fresh

    async def _find(self, caller: Caller, address: SessionAddress) -> Session:
        if isinstance(address, SessionRef):
            await self._authorizer.authorize(caller, address)
            return await self._lookup.by_ref(address)
        try:
            session = self._lookup.by_id(address)
        except SessionNotFound:
            # While the apiserver cannot be reached the store may lag the cluster: an
            # unknown sessionID then proves nothing, and an outage is never answered 404.
            if any(window.ongoing for window in self._outages()):
                raise ApiUnavailable("the apiserver cannot be reached") from None
            raise
        await self._authorizer.authorize(caller, session.ref)
        return session


def _lease(session: Session) -> Lease:
    lease = session.lease()
    if lease is None:
        raise LeaseNotInitialised(
            f"session {session.ref} has no lease yet: the operator has not initialised it"
        )
    return lease


def _session_id(session: Session) -> str:
    return session.status.session_id or session.uid


def _interval_seconds(session: Session) -> int:
    interval = session.status.heartbeat_interval
    assert interval is not None, "an initialised session has its interval"
    return interval
