"""The heartbeat and the session read of docs/API_CONTRACT.md, on top of the lease rules.

Checked in this order: the caller (401, done by the route) → may it beat the session
(403) → does the session exist (404; on the sessionID path the namespace is known only
after the lookup, so there 404 comes before 403) → has it a lease (409) → is it live and
unexpired (410; a lease that lapsed in an outage of the system is given its grace first,
lease rule 8) → within the interval, acknowledged without a write (200) → else one
compare-and-set status write (200). A write that loses re-reads the Session and decides
again from the fresh object, so a heartbeat never revives a session stopped meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeAlias

from session_operator.api.auth import Caller, HeartbeatAuthorizer
from session_operator.api.errors import (
    LeaseNotInitialised,
    SessionGone,
    SessionNotFound,
    WriteContention,
)
from session_operator.api.lookup import SessionLookup
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
    """An accepted heartbeat: the lease now runs until *lease_expires_at*."""

    session_id: str
    lease_expires_at: datetime
    heartbeat_interval: int
    extended: bool
    """False when acknowledged inside the interval, without a write."""


@dataclass(frozen=True)
class SessionView:
    """A session as the API reports it: the stored lease, and the state at read time."""

    session_id: str
    ref: SessionRef
    state: SessionState
    stop_reason: StopReason | None
    lease_expires_at: datetime
    last_heartbeat: datetime | None
    heartbeat_interval: int


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


class HeartbeatService:
    """Heartbeats and reads for authenticated callers."""

    def __init__(
        self,
        lookup: SessionLookup,
        authorizer: HeartbeatAuthorizer,
        sessions: SessionApi,
        clock: Callable[[], datetime],
        outages: Callable[[], Sequence[OutageWindow]] = tuple,
    ) -> None:
        self._lookup = lookup
        self._authorizer = authorizer
        self._sessions = sessions
        self._clock = clock
        self._outages = outages

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
                return _ack(session, decision.expires_at, extended=False)
            try:
                written = await self._sessions.patch_status(
                    session.ref, heartbeat_patch(session.raw_status, decision)
                )
            except PreconditionFailed:
                session, fresh = await self._reread(session), True
                continue
            except NotFound as error:
                raise SessionNotFound(f"no session {session.ref}") from error
            self._lookup.remember(written)
            return _ack(written, decision.expires_at, extended=True)
        raise WriteContention(f"the status of {session.ref} kept changing; retry")

    async def read(self, caller: Caller, address: SessionAddress) -> SessionView:
        """The session at *address* as the API reports it at this instant."""
        session = await self._find(caller, address)
        now = self._clock()
        lease = self._with_outage_grace(now, session)
        state, stop_reason = observed_state(now, lease)
        return SessionView(
            session_id=_session_id(session),
            ref=session.ref,
            state=state,
            stop_reason=stop_reason,
            lease_expires_at=lease.expires_at,
            last_heartbeat=lease.last_heartbeat,
            heartbeat_interval=_interval_seconds(session),
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


def _ack(session: Session, expires_at: datetime, *, extended: bool) -> HeartbeatAck:
    return HeartbeatAck(
        session_id=_session_id(session),
        lease_expires_at=expires_at,
        heartbeat_interval=_interval_seconds(session),
        extended=extended,
    )
