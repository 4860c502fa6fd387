"""``session-operator heartbeat``: keep a session alive from a terminal or a Pod.

:data:`DESCRIPTION` is what ``--help`` says of it. It prints one line as it starts, one
when an answer says the lease is expiring soon, and one when the session ends (``-v``: one
per beat too), and stops at once when the API refuses its token for good: 401 or 403 for a
token given as it is (a token file may be rotated, so it is tried again). ``heartbeat NAME
-- CMD ARGS…`` runs CMD and beats while it runs (:mod:`session_operator.wrapped_command`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from session_operator.api.bodies import HeartbeatBody
from session_operator.config import DEFAULT_TOKEN_AUDIENCE
from session_operator.heartbeat_client import (
    DEFAULT_TOKEN_FILE,
    HeartbeatClient,
    HeartbeatFailed,
    InsecureUrl,
    UnusableUrl,
)
from session_operator.timestamps import format_timestamp
from session_operator.wrapped_command import (
    KILL_AFTER_SECONDS,
    ApiserverStop,
    CannotRun,
    StopUnavailable,
    check_runnable,
    run_while_alive,
)

URL_ENV = "SESSION_API_URL"
TOKEN_ENV = "SESSION_API_TOKEN"
TOKEN_FILE_ENV = "SESSION_API_TOKEN_FILE"
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SESSION_ENDED = 3
EXIT_INTERRUPTED = 130

DESCRIPTION = f"""\
Keep a session alive: beat at its interval until the session ends or Ctrl-C.
The token is for the operator's audience, not the kubeconfig's credentials:
  kubectl create token SERVICEACCOUNT --audience {DEFAULT_TOKEN_AUDIENCE}
Exit codes: 0 acknowledged (--once), 1 refused or unreachable, 2 usage,
3 the session has ended, 130 Ctrl-C.

  session-operator heartbeat [OPTIONS] [NAMESPACE/]NAME -- CMD [ARGS...]
runs CMD once a heartbeat is acknowledged and beats while it runs. SIGINT and
SIGTERM are passed on to CMD; the exit code is CMD's (128+N if signal N ended it).
If the session ends first, CMD gets SIGTERM (SIGKILL {KILL_AFTER_SECONDS:g}s later). Exit codes of
its own: 2 usage, 124 the session ended, 125 heartbeats refused for good, 126 CMD
cannot be run, 127 CMD not found. --stop-on-exit sets the session's spec.stop
when CMD ends, with the kubeconfig's (or the Pod's) credentials: they need patch
on sessions."""

logger = logging.getLogger("session_operator.heartbeat")


class Usage(Exception):
    """The command line does not say enough to send a heartbeat (exit 2)."""


class _CommandAfterDashes(argparse.ArgumentParser):
    """The ``heartbeat`` parser: the words after the first ``--`` are CMD, kept whole
    (``args.wrapped_command``; ``None`` without ``--``).

    argparse cannot say that with a positional list: in ``NAME -v -- ls -l`` the list
    matches (empty) together with NAME and ``ls -l`` is left over, and in
    ``--session-id ID -- sleep 3`` NAME would take ``sleep``.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        command = None
        if "--" in words:
            at = words.index("--")
            words, command = words[:at], words[at + 1 :]
        parsed, extras = super().parse_known_args(words, namespace)
        parsed.wrapped_command = command
        return parsed, extras


def add_heartbeat_command(commands: Any) -> None:
    """Add ``heartbeat`` to the subcommands *commands* (an argparse subparsers action)."""
    beat = commands.add_parser(
        "heartbeat",
        help="keep a session alive (from a terminal or a client Pod), or while a command runs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [OPTIONS] [NAMESPACE/]NAME [-- CMD [ARGS...]]",
    )
    # add_parser makes a plain ArgumentParser; this one differs only in how it splits.
    beat.__class__ = _CommandAfterDashes
    beat.add_argument(
        "session",
        nargs="?",
        metavar="[NAMESPACE/]NAME",
        help="the session; a bare NAME is in the namespace of -n, else of the kubeconfig"
        " context, else of this Pod, else 'default'",
    )
    beat.add_argument("-n", "--namespace", help="namespace of a bare NAME")
    beat.add_argument("--session-id", help="address the session by its status.sessionID instead")
    beat.add_argument("--url", help=f"base URL of the heartbeat API (env {URL_ENV})")
    beat.add_argument(
        "--token",
        help=f"bearer token for the audience {DEFAULT_TOKEN_AUDIENCE} (env {TOKEN_ENV})",
    )
    beat.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the bearer token, read before every beat, for projected tokens"
        f" that rotate (env {TOKEN_FILE_ENV}; default {DEFAULT_TOKEN_FILE} if present)",
    )
    beat.add_argument(
        "--ca-file",
        type=Path,
        help="the CA certificate to trust for an https:// API (default: the system's CAs)",
    )
    beat.add_argument(
        "--allow-http",
        action="store_true",
        help="allow a plain http:// URL (the token then travels unencrypted)",
    )
    beat.add_argument("--once", action="store_true", help="send one heartbeat, print the answer")
    beat.add_argument(
        "--stop-on-exit",
        action="store_true",
        help="with -- CMD: stop the session (spec.stop) when CMD ends; needs patch on"
        " sessions for the kubeconfig's (or the Pod's) identity",
    )
    beat.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print one line per acknowledged heartbeat (else: one as it starts and ends)",
    )


def run_heartbeat(args: argparse.Namespace) -> int:
    """Run ``heartbeat`` with parsed *args*; the process's exit code."""
    logging.basicConfig(level=logging.WARNING, format="session-operator heartbeat: %(message)s")
    try:
        command = _wrapped_command(args)
        client = _client(args)
    except (Usage, InsecureUrl, UnusableUrl) as problem:
        print(f"session-operator heartbeat: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if command is not None:
            return asyncio.run(_run_wrapped(client, command, args))
        if args.once:
            return asyncio.run(_beat_once(client))
        return asyncio.run(_keep_alive(client, verbose=args.verbose))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def session_address(args: argparse.Namespace) -> str:
    """``NAMESPACE/NAME`` or the sessionID the command line names."""
    if args.session_id:
        if args.session:
            raise Usage("give either [NAMESPACE/]NAME or --session-id, not both")
        return str(args.session_id)
    if not args.session:
        raise Usage("which session? give [NAMESPACE/]NAME or --session-id")
    if "/" in args.session:
        return str(args.session)
    return f"{args.namespace or default_namespace()}/{args.session}"


def default_namespace() -> str:
    """The namespace of the kubeconfig's current context, else of this Pod, else default."""
    first = (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
    try:
        document = yaml.safe_load(Path(first).expanduser().read_text(encoding="utf-8"))
        current = document["current-context"]
        context = next(c for c in document["contexts"] if c["name"] == current)
        namespace = context["context"].get("namespace")
        if namespace:
            return str(namespace)
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration):
        pass
    try:
        return POD_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


def _wrapped_command(args: argparse.Namespace) -> list[str] | None:
    """CMD after ``--`` (``None``: none), if the options go with it."""
    command: list[str] | None = args.wrapped_command
    if command is None:
        if args.stop_on_exit:
            raise Usage("--stop-on-exit goes with a command: heartbeat NAME --stop-on-exit -- CMD")
        return None
    if not command:
        raise Usage("which command? give it after --: heartbeat NAME -- CMD ARGS...")
    if args.once:
        raise Usage("--once sends one heartbeat: it does not go with -- CMD")
    if args.stop_on_exit and args.session_id:
        raise Usage(
            "--stop-on-exit stops the session by its name: give [NAMESPACE/]NAME, not --session-id"
        )
    return command


def _client(args: argparse.Namespace) -> HeartbeatClient:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        raise Usage(f"where is the API? give --url or set {URL_ENV}")
    token = args.token or os.environ.get(TOKEN_ENV)
    token_file = args.token_file or _path_from(TOKEN_FILE_ENV)
    if token is None and token_file is None:
        if not DEFAULT_TOKEN_FILE.is_file():
            raise Usage(
                f"no token: give --token (or {TOKEN_ENV}), --token-file (or {TOKEN_FILE_ENV}),"
                f" or mount a projected token at {DEFAULT_TOKEN_FILE}; make one with"
                f" kubectl create token SERVICEACCOUNT --audience {DEFAULT_TOKEN_AUDIENCE}"
            )
        token_file = DEFAULT_TOKEN_FILE
    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    return HeartbeatClient(
        url,
        session_address(args),
        token=token,
        token_file=token_file or DEFAULT_TOKEN_FILE,
        ssl=context,
        allow_http=args.allow_http,
    )


def _path_from(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


async def _beat_once(client: HeartbeatClient) -> int:
    async with client:
        try:
            ack = await client.beat()
        except HeartbeatFailed as failure:
            print(f"session-operator heartbeat: {failure}", file=sys.stderr)
            return EXIT_SESSION_ENDED if failure.session_ended else EXIT_FAILED
    print(ack.model_dump_json())
    return 0


def expiring_soon_line(session: str, seconds_left: float) -> str:
    """The one line that says *session*'s lease is expiring soon, *seconds_left* before
    its end."""
    return (
        f"session-operator heartbeat: {session} is expiring soon: its lease ends in"
        f" {math.ceil(seconds_left)}s"
    )


def _warn(client: HeartbeatClient) -> Callable[[float], None]:
    """Print :func:`expiring_soon_line` for *client*'s session to stderr."""

    def warn(seconds_left: float) -> None:
        print(expiring_soon_line(client.session, seconds_left), file=sys.stderr, flush=True)

    return warn


async def _keep_alive(client: HeartbeatClient, *, verbose: bool) -> int:
    def tell(ack: HeartbeatBody) -> None:
        print(
            f"{client.session}: lease until {format_timestamp(ack.lease_expires_at)},"
            f" next heartbeat in {ack.heartbeat_interval}s",
            flush=True,
        )

    more = "" if verbose else " (-v: a line per beat)"
    print(
        f"session-operator heartbeat: keeping {client.session} alive through {client.url}"
        f" until it ends or Ctrl-C{more}",
        file=sys.stderr,
        flush=True,
    )
    async with client:
        try:
            # It logs why the session ended.
            await client.keep_alive(tell if verbose else None, _warn(client))
        except HeartbeatFailed as failure:
            print(f"session-operator heartbeat: {failure}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_SESSION_ENDED


async def _run_wrapped(
    client: HeartbeatClient, command: list[str], args: argparse.Namespace
) -> int:
    try:
        check_runnable(command)
    except CannotRun as problem:
        print(f"session-operator heartbeat: {problem}", file=sys.stderr)
        return problem.status
    stopper = None
    if args.stop_on_exit:
        try:
            stopper = await ApiserverStop.connect(client.session)
        except StopUnavailable as problem:
            print(f"session-operator heartbeat: {problem}", file=sys.stderr)
            return EXIT_USAGE

    def tell(ack: HeartbeatBody) -> None:
        print(
            f"session-operator heartbeat: {client.session}: lease until"
            f" {format_timestamp(ack.lease_expires_at)}, next heartbeat in"
            f" {ack.heartbeat_interval}s",
            file=sys.stderr,
            flush=True,
        )

    if args.verbose:
        print(
            f"session-operator heartbeat: keeping {client.session} alive through {client.url}"
            f" while {command[0]} runs",
            file=sys.stderr,
            flush=True,
        )
    try:
        async with client:
            return await run_while_alive(
                client,
                command,
                stopper=stopper,
                on_beat=tell if args.verbose else None,
                on_expiring_soon=_warn(client),
            )
    finally:
        if stopper is not None:
            await stopper.close()
