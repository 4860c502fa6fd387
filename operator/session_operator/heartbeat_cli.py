"""``session-operator heartbeat``: keep a session alive from a terminal or a Pod.

:data:`DESCRIPTION` is what ``--help`` says of it. It prints one line as it starts and one
when the session ends (``-v``: one per beat too), and stops at once when the API refuses
its token for good: 401 or 403 for a token given as it is (a token file may be rotated, so
it is tried again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
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
3 the session has ended, 130 Ctrl-C."""

logger = logging.getLogger("session_operator.heartbeat")


class Usage(Exception):
    """The command line does not say enough to send a heartbeat (exit 2)."""


def add_heartbeat_command(commands: Any) -> None:
    """Add ``heartbeat`` to the subcommands *commands* (an argparse subparsers action)."""
    beat = commands.add_parser(
        "heartbeat",
        help="keep a session alive (from a terminal or a client Pod)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        "-v",
        "--verbose",
        action="store_true",
        help="print one line per acknowledged heartbeat (else: one as it starts and ends)",
    )


def run_heartbeat(args: argparse.Namespace) -> int:
    """Run ``heartbeat`` with parsed *args*; the process's exit code."""
    logging.basicConfig(level=logging.WARNING, format="session-operator heartbeat: %(message)s")
    try:
        client = _client(args)
    except (Usage, InsecureUrl, UnusableUrl) as problem:
        print(f"session-operator heartbeat: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
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
            await client.keep_alive(tell if verbose else None)  # it logs why the session ended
        except HeartbeatFailed as failure:
            print(f"session-operator heartbeat: {failure}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_SESSION_ENDED
