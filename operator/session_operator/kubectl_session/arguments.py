"""The command line of ``kubectl session``: its verbs, their options and their ``--help``.

Only argparse here: ``--help`` and a mistyped verb answer at once, without loading the
Kubernetes client.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from session_operator.config import DEFAULT_TOKEN_AUDIENCE, parse_duration
from session_operator.heartbeat_cli import TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV
from session_operator.timestamps import parse_timestamp

PROG = "kubectl session"
DEFAULT_TIMEOUT = "60s"

DESCRIPTION = """\
Sessions (xg2g.io/v1alpha1) from your terminal, with your kubeconfig: its current
context and namespace, unless --context or -n says otherwise. Installed as the
executable kubectl-session: on PATH it is the kubectl plugin `kubectl session`."""

BEAT_DESCRIPTION = f"""\
Send a heartbeat to the operator's heartbeat API: once, or with --watch at the
interval the API names until the session ends or Ctrl-C.

The API takes only tokens for the audience {DEFAULT_TOKEN_AUDIENCE}, never your
kubeconfig's own credentials. With --service-account NAME, beat asks the
apiserver for a short-lived token of that ServiceAccount of the session's
namespace, for that audience (what `kubectl create token NAME --audience
{DEFAULT_TOKEN_AUDIENCE}` does), and renews it while it beats. That needs
`create` on serviceaccounts/token for you, and the ClusterRole
session-heartbeat bound to the ServiceAccount in the namespace. Else the token
is read from --token-file (before every beat), ${TOKEN_FILE_ENV}, or is
${TOKEN_ENV}.

Exit codes: 0 acknowledged (--watch: the session ended), 1 refused,
unreachable, or the session ended (without --watch), 130 Ctrl-C."""

HOLD_DESCRIPTION = """\
Keep a live session alive without heartbeats until a time: set spec.hold.until
(--for DURATION from now, or --until TIME). Heartbeats still work meanwhile;
after the hold the lease runs out as usual. The operator keeps a hold within
its maxHold (its admission webhook refuses a hold further ahead) and within the
session's maximum lifetime: status.holdUntil tells the end in force. `release`
ends the hold."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_target_options(parser, None)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = _verb(verbs, "list", "list the sessions of the namespace (-A: of all)")
    listing.add_argument(
        "-A", "--all-namespaces", action="store_true", help="the sessions of every namespace"
    )
    listing.add_argument("-l", "--selector", help="only sessions with these labels (k=v,...)")
    _add_output_option(listing)

    get = _verb(verbs, "get", "show one or more sessions as a table")
    get.add_argument("names", nargs="+", metavar="NAME", help="the sessions")
    _add_output_option(get)

    describe = _verb(
        verbs, "describe", "show a session's lease and its timeline (conditions and Events)"
    )
    describe.add_argument("name", metavar="NAME", help="the session")

    beat = _verb(verbs, "beat", "send a heartbeat, once or with --watch until the session ends")
    beat.description = BEAT_DESCRIPTION
    beat.add_argument("name", metavar="NAME", help="the session")
    beat.add_argument(
        "-w", "--watch", action="store_true", help="beat at the session's interval until it ends"
    )
    beat.add_argument("--url", help=f"base URL of the heartbeat API (env {URL_ENV})")
    beat.add_argument(
        "--ca-file", metavar="FILE", help="CA certificate to trust for an https:// API"
    )
    beat.add_argument(
        "--allow-http",
        action="store_true",
        help="allow a plain http:// URL (the token then travels unencrypted)",
    )
    tokens = beat.add_mutually_exclusive_group()
    tokens.add_argument(
        "--service-account",
        metavar="NAME",
        help="mint a token of this ServiceAccount of the session's namespace (TokenRequest)",
    )
    beat.add_argument(
        "--audience",
        default=DEFAULT_TOKEN_AUDIENCE,
        help="with --service-account: the audience the operator accepts (its tokenAudiences;"
        f" default {DEFAULT_TOKEN_AUDIENCE})",
    )
    tokens.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"read the token from FILE before every beat (env {TOKEN_FILE_ENV})",
    )

    hold = _verb(verbs, "hold", "keep a session alive without heartbeats until a time")
    hold.description = HOLD_DESCRIPTION
    hold.add_argument("name", metavar="NAME", help="the session")
    end = hold.add_mutually_exclusive_group(required=True)
    end.add_argument(
        "--for",
        dest="duration",
        type=positive_duration,
        metavar="DURATION",
        help="hold for this long from now (like 30m, 2h)",
    )
    end.add_argument(
        "--until",
        type=instant,
        metavar="TIME",
        help="hold until this RFC 3339 time (like 2026-12-06T18:00:00Z)",
    )

    release = _verb(verbs, "release", "end a session's hold: remove spec.hold")
    release.add_argument("name", metavar="NAME", help="the session")

    stop = _verb(verbs, "stop", "stop a session: set spec.stop, so that it ends USER_STOPPED")
    stop.add_argument("name", metavar="NAME", help="the session")
    stop.add_argument("--wait", action="store_true", help="then wait until it has stopped")
    _add_timeout_option(stop, "with --wait: how long to wait")

    wait = _verb(verbs, "wait", "wait until a session is ready, or has stopped")
    wait.add_argument("name", metavar="NAME", help="the session")
    wait.add_argument(
        "--for",
        dest="target",
        required=True,
        choices=("ready", "stopped"),
        help="ready: state ready; stopped: ended (stopped or failed) or deleted",
    )
    _add_timeout_option(wait, "how long to wait; then exit 1")

    logs = _verb(verbs, "logs", "print the log of the session's Pod (a Session with a template)")
    logs.add_argument("name", metavar="NAME", help="the session")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the log as it grows")
    logs.add_argument("-c", "--container", help="the container (default: the Pod's only one)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    return parser


def _verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    command = verbs.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also after the verb, as kubectl takes them; a value given before it is kept.
    _add_target_options(command, argparse.SUPPRESS)
    return command


def _add_target_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--kubeconfig", default=default, metavar="FILE", help="kubeconfig file (env KUBECONFIG)"
    )
    parser.add_argument(
        "--context", default=default, metavar="NAME", help="kubeconfig context to use"
    )
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )


def _add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("wide",),
        help="wide: add the instants and the age, and shorten no name",
    )


def _add_timeout_option(parser: argparse.ArgumentParser, summary: str) -> None:
    parser.add_argument(
        "--timeout",
        type=positive_duration,
        default=positive_duration(DEFAULT_TIMEOUT),
        help=f"{summary} (like 30s, 2m; default {DEFAULT_TIMEOUT})",
    )


def instant(text: str) -> datetime:
    """An RFC 3339 time like ``2026-12-06T18:00:00Z`` (an offset, or ``Z``, is needed)."""
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_duration(text: str) -> timedelta:
    """A duration like ``60s``, ``2m``, ``1h30m`` or ``60``, above zero."""
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be above zero: {text!r}")
    return value
