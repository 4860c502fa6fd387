"""``session-operator heartbeat NAME -- CMD ARGS…``: run CMD, and keep its session alive
while it runs.

CMD starts once a heartbeat is acknowledged, inherits stdin, stdout and stderr, and is
passed SIGINT and SIGTERM; the command beats until CMD has exited and then exits with
CMD's status (128+N when signal N ended it). When the session ends meanwhile (410, or 404
for a session that is not there), CMD gets SIGTERM, then SIGKILL after
:data:`KILL_AFTER_SECONDS`, and the status is :data:`EXIT_SESSION_ENDED`. The statuses of
its own follow ``timeout``, ``env`` and ``nice``, so that a script tells them from CMD's
small ones: 124 the session ended, 125 the heartbeats failed for good, 126 CMD cannot be
run, 127 CMD is not there.

``--stop-on-exit`` sets the session's ``spec.stop`` when CMD ends (the one way a Session
is stopped, as ``kubectl session stop`` does), through the apiserver with the credentials
of the kubeconfig, or of the Pod's ServiceAccount: the heartbeat token is for the
operator's audience and no credential at the apiserver. Only that option loads the
Kubernetes client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from session_operator.api.bodies import HeartbeatBody
from session_operator.heartbeat_client import HeartbeatClient, HeartbeatFailed, SessionEnded

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from session_operator.kubectl_session.sessions import Sessions

EXIT_SESSION_ENDED = 124
EXIT_HEARTBEAT_FAILED = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
SIGNALLED = 128
"""CMD ended by signal N exits 128+N, as a shell reports it."""
KILL_AFTER_SECONDS = 10.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PREFIX = "session-operator heartbeat: "

# The client's own warning as the session ends; this command says it in its line instead.
_CLIENT_LOGGER = "session_operator.heartbeat_client"
_CLIENT_END_WARNING = "session %s ended: %s"


class CannotRun(Exception):
    """CMD is not there (``status`` 127) or may not be executed (126)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StopUnavailable(Exception):
    """``--stop-on-exit`` has no apiserver to stop the session through."""


class StopFailed(Exception):
    """The session was not stopped after CMD; why, in a sentence."""


class SessionStopper(Protocol):
    """Stops the session when CMD ends (``--stop-on-exit``)."""

    async def stop(self) -> None:
        """Ask for the session's stop; :class:`StopFailed` if that was refused."""


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its exit code, or 128+N for signal N."""
    return SIGNALLED - returncode if returncode < 0 else returncode


def check_runnable(command: Sequence[str]) -> None:
    """Raise :class:`CannotRun` if the shell could not run *command*: its program is not on
    ``PATH`` (or, given with a ``/``, not there), or may not be executed."""
    program = command[0]
    if os.sep not in program:
        if shutil.which(program) is None:
            raise CannotRun(f"{program}: command not found", EXIT_NOT_FOUND)
        return
    if not os.path.exists(program):
        raise CannotRun(f"cannot run {program}: no such file", EXIT_NOT_FOUND)
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        raise CannotRun(f"cannot run {program}: permission denied", EXIT_CANNOT_RUN)


async def run_while_alive(
    client: HeartbeatClient,
    command: Sequence[str],
    *,
    stopper: SessionStopper | None = None,
    on_beat: Callable[[HeartbeatBody], None] | None = None,
    on_expiring_soon: Callable[[float], None] | None = None,
    kill_after: float = KILL_AFTER_SECONDS,
) -> int:
    """Run *command* while *client* keeps its session alive; the exit status (see the
    module's docstring). *on_beat* is told of every acknowledgement, *on_expiring_soon*
    as :meth:`HeartbeatClient.keep_alive` tells it."""
    loop = asyncio.get_running_loop()
    alive: asyncio.Future[None] = loop.create_future()

    def beaten(ack: HeartbeatBody) -> None:
        if not alive.done():
            alive.set_result(None)
        if on_beat is not None:
            on_beat(ack)

    with _client_end_warning_quiet():
        relay = SignalRelay(loop)
        beating = asyncio.create_task(
            client.keep_alive(beaten, on_expiring_soon), name=f"heartbeat {client.session}"
        )
        try:
            first: set[asyncio.Future[Any]] = {alive, beating, relay.before_start}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if relay.before_start.done():
                return SIGNALLED + relay.before_start.result()
            if not alive.done():
                return _heartbeats_over(client, beating, f"not starting {command[0]}")
            status = await _run(client, command, beating, relay, kill_after)
            relay.remove()  # CMD has exited: a Ctrl-C now is for this command
            if stopper is not None and not _session_ended(beating):
                await _stop(client, stopper)
            return status
        finally:
            relay.remove()
            if not beating.done():
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
            elif not beating.cancelled():
                beating.exception()  # retrieved, so that asyncio does not warn of it


class SignalRelay:
    """SIGINT and SIGTERM: passed on to CMD once it runs; before that, the reason not to
    start it (:attr:`before_start`). A signal ignored as this process started stays ignored
    (CMD inherits that), as a shell's background job ignores SIGINT."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.before_start: asyncio.Future[int] = loop.create_future()
        self._loop = loop
        self._child: asyncio.subprocess.Process | None = None
        self._handled = [s for s in FORWARDED_SIGNALS if signal.getsignal(s) != signal.SIG_IGN]
        for number in self._handled:
            loop.add_signal_handler(number, self._received, number)

    def forward_to(self, child: asyncio.subprocess.Process) -> None:
        """Pass the signals on to *child* from now on."""
        self._child = child

    def remove(self) -> None:
        """Give the signals back their handlers (once; again does nothing)."""
        for number in self._handled:
            self._loop.remove_signal_handler(number)
        self._handled = []

    def _received(self, number: int) -> None:
        if self._child is None:
            if not self.before_start.done():
                self.before_start.set_result(number)
        elif self._child.returncode is None and not _terminal_sent_it_to_cmd_too(number):
            with contextlib.suppress(ProcessLookupError):
                self._child.send_signal(number)


def _terminal_sent_it_to_cmd_too(number: int) -> bool:
    """True for a SIGINT while this process's group is its terminal's foreground group: a
    Ctrl-C, which the terminal sent to CMD (in this group) as well. Passed on, it would
    interrupt CMD twice. (A ``kill -INT`` of this process alone while it is in the
    foreground is therefore not passed on either.)"""
    if number != signal.SIGINT:
        return False
    for descriptor in (0, 1, 2):
        with contextlib.suppress(OSError):  # not a terminal, or not the controlling one
            return os.tcgetpgrp(descriptor) == os.getpgrp()
    return False


async def _run(
    client: HeartbeatClient,
    command: Sequence[str],
    beating: asyncio.Task[SessionEnded],
    relay: SignalRelay,
    kill_after: float,
) -> int:
    try:
        child = await asyncio.create_subprocess_exec(*command)
    except OSError as error:
        _say(f"cannot run {command[0]}: {(error.strerror or str(error)).lower()}")
        return EXIT_NOT_FOUND if error.errno == errno.ENOENT else EXIT_CANNOT_RUN
    relay.forward_to(child)
    exited = asyncio.create_task(child.wait(), name=f"{command[0]} (pid {child.pid})")
    await asyncio.wait({exited, beating}, return_when=asyncio.FIRST_COMPLETED)
    if exited.done():
        return exit_status(exited.result())
    status = _heartbeats_over(
        client,
        beating,
        f"stopping {command[0]} (SIGTERM, then SIGKILL after {kill_after:g}s)",
    )
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(exited), kill_after)
    except TimeoutError:
        _say(f"{command[0]} still runs {kill_after:g}s after SIGTERM: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await exited
    return status


def _heartbeats_over(
    client: HeartbeatClient, beating: asyncio.Task[SessionEnded], then: str
) -> int:
    """Say in one line why beating stopped and *then* what happens to CMD; the status."""
    try:
        end = beating.result()
    except HeartbeatFailed as failure:
        _say(f"{failure}; {then}")
        return EXIT_HEARTBEAT_FAILED
    if end.status == 404:
        how = "not found"
    else:
        how = ", ".join(part for part in (end.state or "gone", end.stop_reason) if part)
    _say(f"session {client.session} ended ({how}); {then}")
    return EXIT_SESSION_ENDED


def _session_ended(beating: asyncio.Task[SessionEnded]) -> bool:
    return beating.done() and not beating.cancelled() and beating.exception() is None


async def _stop(client: HeartbeatClient, stopper: SessionStopper) -> None:
    try:
        await stopper.stop()
    except StopFailed as failure:
        _say(f"did not stop {client.session} after the command: {failure}")


def _say(line: str) -> None:
    print(PREFIX + line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _client_end_warning_quiet() -> Iterator[None]:
    def not_the_end_warning(record: logging.LogRecord) -> bool:
        return record.msg != _CLIENT_END_WARNING

    logger = logging.getLogger(_CLIENT_LOGGER)
    logger.addFilter(not_the_end_warning)
    try:
        yield
    finally:
        logger.removeFilter(not_the_end_warning)


class ApiserverStop:
    """``--stop-on-exit``: sets ``spec.stop: true`` on ``NAMESPACE/NAME`` (the operator then
    stops it, ``USER_STOPPED``). It needs ``patch`` on ``sessions`` in that namespace."""

    def __init__(self, api: ApiClient, sessions: Sessions, name: str) -> None:
        self._api = api
        self._sessions = sessions
        self._name = name

    @classmethod
    async def connect(cls, session: str) -> ApiserverStop:
        """A stopper for *session* (``NAMESPACE/NAME``), through the apiserver of the Pod
        this runs in, else of ``KUBECONFIG`` (or ``~/.kube/config``); else
        :class:`StopUnavailable`."""
        # The Kubernetes client takes a second to load: only this option waits for it.
        from kubernetes_asyncio.config import ConfigException

        from session_operator.k8s.connection import NoCluster, connect
        from session_operator.k8s.rest import Rest
        from session_operator.kubectl_session.kubeconfig import REQUEST_TIMEOUT_SECONDS
        from session_operator.kubectl_session.sessions import Sessions

        namespace, _, name = session.partition("/")
        try:
            api = await connect()
        except NoCluster as missing:
            raise StopUnavailable(
                f"--stop-on-exit stops the session through the apiserver, and there is none"
                f" ({missing}): set KUBECONFIG, or run it in a Pod"
            ) from None
        except (ConfigException, OSError, ValueError) as error:
            raise StopUnavailable(f"--stop-on-exit: cannot use the kubeconfig: {error}") from None
        return cls(api, Sessions(Rest(api, timeout=REQUEST_TIMEOUT_SECONDS), namespace), name)

    async def stop(self) -> None:
        """Set ``spec.stop``; :class:`StopFailed` naming what the apiserver said."""
        from session_operator.k8s.errors import KubernetesError, Rejected
        from session_operator.kubectl_session.errors import CommandError, apiserver_failure
        from session_operator.kubectl_session.kubeconfig import server

        try:
            await self._sessions.request_stop(self._name)
        except CommandError as error:
            raise StopFailed(str(error)) from None
        except KubernetesError as error:
            why = apiserver_failure(error, server(self._api))
            if isinstance(error, Rejected):
                why += " (--stop-on-exit needs patch on sessions in the session's namespace)"
            raise StopFailed(why) from None

    async def close(self) -> None:
        """Close the apiserver connections."""
        await self._api.close()
