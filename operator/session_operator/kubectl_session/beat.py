"""``beat``: heartbeats for one Session, once or until it ends, with a token that is
renewed while it beats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from session_operator.api.bodies import HeartbeatBody
from session_operator.heartbeat_client import DEFAULT_TOKEN_FILE, HeartbeatClient, SessionEnded
from session_operator.kubectl_session.durations import human_duration
from session_operator.kubectl_session.errors import CommandError
from session_operator.timestamps import format_timestamp

OpenClient = Callable[[], Awaitable[tuple[HeartbeatClient, float | None]]]
"""Makes a client with a fresh token; also the seconds after which to make the next one
(``None``: the token does not run out, or renews itself, as a token file does)."""


@dataclass(frozen=True)
class Endpoint:
    """The heartbeat API: its base URL, the CA to trust, whether plain HTTP is meant."""

    url: str
    ca_file: Path | None
    allow_http: bool

    def client(
        self, session: str, *, token: str | None = None, token_file: Path | None = None
    ) -> HeartbeatClient:
        """A client for *session* (``namespace/name``) with *token*, else *token_file*."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        except (OSError, ssl.SSLError) as error:
            raise CommandError(f"cannot use --ca-file {self.ca_file}: {error}") from None
        return HeartbeatClient(
            self.url,
            session,
            token=token,
            token_file=token_file or DEFAULT_TOKEN_FILE,
            ssl=context,
            allow_http=self.allow_http,
        )


def acknowledged(name: str, ack: HeartbeatBody, now: datetime) -> str:
    """The line that tells of one acknowledged heartbeat, and whether the lease is in the
    operator's expiry warning window (a heartbeat cannot move it out: the session's
    lifetime is nearly over)."""
    left = human_duration(ack.lease_expires_at - now)
    soon = ", expiring soon" if ack.expiring_soon else ""
    return (
        f"session/{name}: lease until {format_timestamp(ack.lease_expires_at)}"
        f" ({left} left{soon}), next heartbeat in {ack.heartbeat_interval}s"
    )


def ended(name: str, end: SessionEnded) -> str:
    """The line that tells why beating stopped: the session ended."""
    state = end.state or ("deleted" if end.status == 404 else "gone")
    return f"session/{name}: ended, {state}" + (f" ({end.stop_reason})" if end.stop_reason else "")


async def beat_once(open_client: OpenClient) -> HeartbeatBody:
    """One heartbeat; its acknowledgement (else ``HeartbeatFailed``)."""
    client, _ = await open_client()
    async with client:
        return await client.beat()


async def beat_until_ended(
    open_client: OpenClient, on_beat: Callable[[HeartbeatBody], None]
) -> SessionEnded:
    """Beat at the session's interval until it ends (its end), a refusal that asking
    again cannot change (``HeartbeatFailed``) or cancellation; a token that runs out is
    replaced before it does, by a new client with a new one."""
    _quiet_the_clients_end_warning()
    while True:
        client, renew_in = await open_client()
        async with client:
            beating = asyncio.create_task(client.keep_alive(on_beat))
            try:
                done, _ = await asyncio.wait({beating}, timeout=renew_in)
            finally:
                if not beating.done():
                    beating.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beating
            if done:
                return beating.result()


def _quiet_the_clients_end_warning() -> None:
    """The client logs a warning as the session ends; ``beat`` says it in a line of its
    own (:func:`ended`), so the warning would say it twice. Its retries still show."""
    logging.getLogger("session_operator.heartbeat_client").addFilter(
        lambda record: not str(record.msg).startswith("session %s ended")
    )
