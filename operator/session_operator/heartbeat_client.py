"""A heartbeat client for in-cluster programs: keep one Session alive from the background.

::

    async with HeartbeatClient("https://session-lease-operator.ops:8443", "media/living-room",
                               ssl=ssl.create_default_context(cafile=CA)) as client:
        async with client.in_background() as heartbeat:
            await play()                      # beats go out meanwhile
            if heartbeat.ended is not None:   # the session was stopped (410) or deleted (404)
                ...

The client beats at the session's ``heartbeat_interval`` (from each answer, plus a random
tenth at most, so that clients started together spread out), reads the
token file before every beat (projected ServiceAccount tokens rotate), backs off on 503,
409 and network failures (never waiting longer than one interval, and never less than a
``Retry-After``), and stops and reports when the API answers 410 Gone or 404 for the
session. A refusal that asking again cannot change (401 or 403 for a token that does not
come from a file, a URL with no heartbeat API) stops it with :class:`HeartbeatFailed`.
When an answer says the lease is expiring soon (in the operator's ``expiryWarning``
window though the client beats: near the end of the session's maximum lifetime), it
tells ``on_expiring_soon`` once, with the seconds left, until an answer says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import SplitResult, quote, urlsplit

import aiohttp
from pydantic import ValidationError

from session_operator.api.bodies import HeartbeatBody
from session_operator.config import Settings

# Where a client Pod mounts its projected token for the operator's audience (docs/security.md).
DEFAULT_TOKEN_FILE = Path("/var/run/secrets/heartbeat/token")
REQUEST_TIMEOUT_SECONDS = 5.0
# Until the first answer names the session's interval: the operator's default interval.
DEFAULT_INTERVAL_SECONDS = Settings.model_fields["heartbeat_interval"].get_default().total_seconds()
FIRST_BACKOFF_SECONDS = 0.5
# Each wait is the interval plus up to this fraction of it, drawn anew: clients started
# together drift apart instead of beating in step, and no beat lands inside the interval
# (where the API would acknowledge it without extending the lease).
INTERVAL_JITTER = 0.1
# The problem type of a 404 that means the session is not there (any other 404: the URL
# has no heartbeat API).
SESSION_NOT_FOUND_TYPE = "https://xg2g.io/problems/session-not-found"
_CREDENTIALS_REFUSED = frozenset({401, 403})
# Worth asking again as it is: the API asked to (409, 429) or could not answer (5xx).
_TRANSIENT_STATUSES = frozenset({409, 429})
_SCHEME_PREFIX = re.compile(r"(?i)^(https?):/*")

logger = logging.getLogger(__name__)


class HeartbeatFailed(Exception):
    """A heartbeat was not acknowledged: refused by the API, or the API was not reached.

    ``status`` is the HTTP status (``None`` when no answer came), ``problem`` the
    problem+json document, ``retry_after`` the seconds the API asked to wait.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem: Mapping[str, Any] = problem or {}
        self.retry_after = retry_after

    @property
    def session_ended(self) -> bool:
        """True for 410 Gone (stopping, stopped, expired) and a 404 that says the session
        is not there: beating again is futile."""
        if self.status == 404:
            return self.problem.get("type") == SESSION_NOT_FOUND_TYPE
        return self.status == 410

    @property
    def credentials_refused(self) -> bool:
        """True for 401 and 403: the token is not valid, or may not beat for this session."""
        return self.status in _CREDENTIALS_REFUSED

    @property
    def transient(self) -> bool:
        """True when the same heartbeat may be acknowledged later: no answer came, or
        409, 429 or a 5xx."""
        return self.status is None or self.status in _TRANSIENT_STATUSES or self.status >= 500


@dataclass(frozen=True)
class SessionEnded:
    """Why a client stopped beating: the API's final answer."""

    status: int
    state: str | None
    stop_reason: str | None
    detail: str


class Backoff:
    """Delays between retries: doubling from *first*, at most *cap*, never below Retry-After."""

    def __init__(self, first: float = FIRST_BACKOFF_SECONDS) -> None:
        self._first = first
        self._next = first

    def delay(self, cap: float, retry_after: float | None = None) -> float:
        """The delay before the next retry (and double the one after it)."""
        current = min(self._next, cap)
        self._next = min(self._next * 2, cap)
        return max(current, retry_after or 0.0)

    def reset(self) -> None:
        """Start again from *first* (after a success)."""
        self._next = self._first


def heartbeat_path(session: str) -> str:
    """The heartbeat path of *session*: ``namespace/name``, or a ``status.sessionID``."""
    namespace, slash, name = session.partition("/")
    if slash:
        return f"/api/v3/namespaces/{_segment(namespace)}/sessions/{_segment(name)}/heartbeat"
    return f"/api/v3/sessions/{_segment(session)}/heartbeat"


def next_beat_delay(interval: float, draw: Callable[[], float] = random.random) -> float:
    """The wait before the next beat: *interval* plus a jitter of up to
    :data:`INTERVAL_JITTER` of it (*draw* gives a fraction in [0, 1))."""
    return interval * (1 + INTERVAL_JITTER * draw())


class InsecureUrl(ValueError):
    """A plain ``http://`` URL where the client was not told that plain HTTP is meant."""


class UnusableUrl(ValueError):
    """A URL that is not ``https://`` or ``http://``, names no host, or a port that cannot
    be."""


class HeartbeatClient:
    """Heartbeats for one session, to the API at *url* (like ``https://host:8443``).

    A heartbeat carries a bearer token, so a plain ``http://`` *url* is refused with
    :class:`InsecureUrl` unless *allow_http* says it is meant (a loopback test, a sidecar);
    a *url* without a scheme or a host with :class:`UnusableUrl`.
    """

    def __init__(
        self,
        url: str,
        session: str,
        *,
        token_file: Path = DEFAULT_TOKEN_FILE,
        token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        allow_http: bool = False,
    ) -> None:
        """*token*, when given, is sent as it is; else *token_file* is read before every beat
        (projected tokens rotate)."""
        url = url.strip()
        parts = _usable_parts(url)
        if parts.scheme == "http" and not allow_http:
            raise InsecureUrl(
                f"refusing to send a bearer token over plain HTTP to {url}: use https://,"
                " or allow plain HTTP explicitly (--allow-http)"
            )
        self.session = session
        self._url = url.rstrip("/") + heartbeat_path(session)
        self._base_url = url.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._token_file = token_file
        self._token = token
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def beat(self) -> HeartbeatBody:
        """Send one heartbeat; return the acknowledgement or raise :class:`HeartbeatFailed`."""
        token = self._read_token()
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._http.post(
                self._url, headers={"Authorization": f"Bearer {token}"}, ssl=self._ssl or True
            ) as response:
                text = await response.text()
                if response.status == 200:
                    return HeartbeatBody.model_validate_json(text)
                refusal = _refusal(response.status, text, response.headers.get("Retry-After"))
                if response.status == 404 and not refusal.session_ended:
                    raise HeartbeatFailed(
                        f"{self._base_url} has no heartbeat API (404 for {self._url}): give"
                        f" --url the API's base URL, like {self._origin}",
                        404,
                        refusal.problem,
                    )
                raise refusal
        except (TimeoutError, aiohttp.ClientError, ValidationError) as error:
            raise HeartbeatFailed(_unreached(self._base_url, error)) from error

    @property
    def url(self) -> str:
        """The API's base URL, as given."""
        return self._base_url

    async def keep_alive(
        self,
        on_beat: Callable[[HeartbeatBody], None] | None = None,
        on_expiring_soon: Callable[[float], None] | None = None,
    ) -> SessionEnded:
        """Beat at the session's interval until the API says the session has ended; tell
        *on_beat* of each acknowledgement, and *on_expiring_soon* of the seconds left when
        an acknowledgement says the lease is expiring soon and the one before did not (once
        per stay in the warning window). Raise :class:`HeartbeatFailed` when asking again
        cannot help: 401 or 403 for a *token* given as it is (a token file may be rotated,
        so that is asked again), or any other refusal but 409, 429 and 5xx."""
        backoff = Backoff()
        interval = DEFAULT_INTERVAL_SECONDS
        expiring = False
        while True:
            try:
                ack = await self.beat()
                if on_beat is not None:
                    on_beat(ack)
                if ack.expiring_soon and not expiring and on_expiring_soon is not None:
                    on_expiring_soon(ack.seconds_left or 0.0)
                expiring = ack.expiring_soon
            except HeartbeatFailed as failure:
                if failure.session_ended:
                    ended = _ended(failure)
                    logger.warning("session %s ended: %s", self.session, ended.detail)
                    return ended
                if not self._worth_retrying(failure):
                    raise
                delay = backoff.delay(interval, failure.retry_after)
                logger.warning("%s; retrying in %.1fs", failure, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            interval = float(ack.heartbeat_interval)
            await asyncio.sleep(next_beat_delay(interval))

    @contextlib.asynccontextmanager
    async def in_background(
        self, on_expiring_soon: Callable[[float], None] | None = None
    ) -> AsyncIterator[BackgroundHeartbeat]:
        """Keep the session alive while the block runs; stop beating when it exits.
        *on_expiring_soon* is told as :meth:`keep_alive` tells it."""
        task = asyncio.create_task(
            self.keep_alive(on_expiring_soon=on_expiring_soon), name=f"heartbeat {self.session}"
        )
        try:
            yield BackgroundHeartbeat(task)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _worth_retrying(self, failure: HeartbeatFailed) -> bool:
        if failure.credentials_refused:
            return self._token is None
        return failure.transient

    def _read_token(self) -> str:
        if self._token is not None:
            return self._token
        try:
            return self._token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise HeartbeatFailed(f"cannot read token file {self._token_file}: {error}") from error


class BackgroundHeartbeat:
    """A running :meth:`HeartbeatClient.keep_alive`."""

    def __init__(self, task: asyncio.Task[SessionEnded]) -> None:
        self._task = task

    @property
    def ended(self) -> SessionEnded | None:
        """Why beating stopped, once the session has ended; ``None`` while it goes on.
        Raises :class:`HeartbeatFailed` if beating stopped on a refusal that asking again
        cannot change (see :meth:`HeartbeatClient.keep_alive`)."""
        if self._task.done() and not self._task.cancelled():
            return self._task.result()
        return None

    async def wait(self) -> SessionEnded:
        """Wait until the session has ended (or raise as :attr:`ended` does)."""
        return await asyncio.shield(self._task)


def _usable_parts(url: str) -> SplitResult:
    """*url* split, if it has an ``http`` or ``https`` scheme, a host and a possible port;
    else :class:`UnusableUrl` naming the fix."""
    if "://" not in url:
        # `127.0.0.1:8080`, `api:8443`, `//api:8443`, `http:api:8080`: say what was meant.
        prefix = _SCHEME_PREFIX.match(url)
        rest = url[prefix.end() :] if prefix else url.lstrip("/")
        if prefix:
            hint = f"{prefix.group(1).lower()}://{rest}"
        else:
            hint = f"https://{rest}, or http://{rest} with --allow-http"
        raise UnusableUrl(f"{url!r} is not a URL: write {hint}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnusableUrl(f"the API's URL must start with https:// or http:// (got {url!r})")
    try:
        _ = parts.port  # a port out of range raises ValueError
    except ValueError as error:
        raise UnusableUrl(f"{url!r} has a bad port ({error})") from None
    if not parts.hostname:
        raise UnusableUrl(f"{url!r} names no host: write {scheme}://HOST:PORT")
    return parts._replace(scheme=scheme)


def _unreached(base_url: str, error: Exception) -> str:
    """What went wrong on the way to the API, as a sentence that names the fix."""
    if isinstance(error, TimeoutError):
        return f"no answer from {base_url} within {REQUEST_TIMEOUT_SECONDS:g}s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        problem = error.certificate_error
        why = getattr(problem, "verify_message", None) or str(problem)
        return f"cannot trust the certificate of {base_url}: {why}"
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        why = getattr(error.os_error, "reason", None) or str(error.os_error)
        return (
            f"no TLS handshake with {base_url} ({str(why).lower().replace('_', ' ')}): if the"
            " API serves plain HTTP, use http:// with --allow-http"
        )
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        reason = getattr(error.os_error, "strerror", None) or str(error.os_error)
        return f"cannot resolve the host of {base_url} ({reason.lower()}): check --url"
    if isinstance(error, aiohttp.ClientConnectorError):
        number = error.os_error.errno
        reason = os.strerror(number) if number else str(error.os_error)
        return f"cannot reach {base_url}: {reason[:1].lower()}{reason[1:]}"
    if isinstance(error, ValidationError):
        return f"{base_url} answered 200 with something that is not a heartbeat acknowledgement"
    if isinstance(error, aiohttp.InvalidURL):
        return f"{base_url} is not a URL aiohttp can reach: check --url"
    return f"heartbeat to {base_url} failed: {type(error).__name__}: {error}"


def _segment(text: str) -> str:
    return quote(text, safe="")


def _refusal(status: int, text: str, retry_after: str | None) -> HeartbeatFailed:
    try:
        problem = json.loads(text)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or text[:200])
    return HeartbeatFailed(
        f"heartbeat refused ({status}): {detail}", status, problem, retry_after_seconds(retry_after)
    )


def retry_after_seconds(header: str | None) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (``None``: absent, or a date)."""
    return float(header) if header and header.strip().isdigit() else None


def _ended(failure: HeartbeatFailed) -> SessionEnded:
    problem = failure.problem
    return SessionEnded(
        status=failure.status or 0,
        state=problem.get("state"),
        stop_reason=problem.get("stop_reason"),
        detail=str(problem.get("detail") or failure),
    )
