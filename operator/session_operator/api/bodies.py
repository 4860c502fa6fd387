"""The JSON bodies of the heartbeat API (snake_case, as docs/API_CONTRACT.md gives them), as
pydantic models.

The server renders them and :mod:`session_operator.heartbeat_client` parses them; the OpenAPI
document describes the same fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from session_operator.lease import SessionState, StopReason
from session_operator.timestamps import format_timestamp, parse_timestamp


def _parsed(value: object) -> object:
    return parse_timestamp(value) if isinstance(value, str) else value


Timestamp = Annotated[
    datetime, BeforeValidator(_parsed), PlainSerializer(format_timestamp, return_type=str)
]
"""RFC 3339 in UTC with milliseconds, like ``2026-11-23T10:00:05.123Z``."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class HeartbeatBody(_Body):
    """The answer to an accepted heartbeat."""

    session_id: str
    acknowledged: Literal[True] = True
    lease_expires_at: Timestamp
    heartbeat_interval: int
    # Both have a default only for answers of an operator that predates them.
    seconds_left: float | None = None
    """Seconds from the answer until ``lease_expires_at``, to the millisecond."""
    expiring_soon: bool = False
    """The lease is in the operator's expiry warning window (``expiryWarning`` or less
    before its end)."""


class SessionBody(_Body):
    """A session as the API reports it (``state`` is the state at read time)."""

    session_id: str
    namespace: str
    name: str
    state: SessionState
    lease_expires_at: Timestamp
    heartbeat_interval: int
    last_heartbeat: Timestamp | None
    stop_reason: StopReason | None
    seconds_left: float
    """Seconds from the answer until ``lease_expires_at`` (0 without a live lease)."""
    expiring_soon: bool
    """The lease is in the operator's expiry warning window."""
