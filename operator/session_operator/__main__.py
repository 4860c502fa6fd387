"""``session-operator``: run the operator, the heartbeat API alone, or send heartbeats."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kubernetes_asyncio.config import ConfigException

from session_operator import __version__
from session_operator.client import (
    DEFAULT_TOKEN_FILE,
    HeartbeatClient,
    HeartbeatFailed,
    InsecureUrl,
)
from session_operator.config import ConfigError, Settings, load_settings
from session_operator.k8s.client import NoCluster
from session_operator.runtime import configure_logging, run_operator, serve_api

URL_ENV = "XG2G_HEARTBEAT_URL"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SESSION_ENDED = 3
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``session-operator`` console script."""
    parser = argparse.ArgumentParser(prog="session-operator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator and its HTTP server")
    serve = commands.add_parser(
        "serve-api", help="serve only the heartbeat API (no lifecycle writes; any replicas)"
    )
    for command in (run, serve):
        command.add_argument("--config", type=Path, help="YAML configuration file")
        command.add_argument("--namespace", help="watch only this namespace (default: all)")
    beat = commands.add_parser("heartbeat", help="keep a session alive, as an in-cluster client")
    beat.add_argument("session", metavar="NAMESPACE/NAME", help="the session (or its sessionID)")
    beat.add_argument("--once", action="store_true", help="send one heartbeat, print the answer")
    beat.add_argument(
        "--url", default=os.environ.get(URL_ENV), help=f"base URL of the API (env {URL_ENV})"
    )
    beat.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE, help="bearer token")
    beat.add_argument("--ca-file", type=Path, help="CA certificate that signed the API's own")
    beat.add_argument(
        "--allow-http",
        action="store_true",
        help="allow a plain http:// URL (the token then travels unencrypted)",
    )
    args = parser.parse_args(argv)
    if args.command == "heartbeat":
        if not args.url:
            parser.error(f"heartbeat needs --url or {URL_ENV}")
        return _heartbeat(args)
    try:
        settings = load_settings(args.config, namespace=args.namespace)
    except ConfigError as error:
        for problem in error.problems:
            print(f"session-operator: invalid configuration: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return _serve(settings, run_operator if args.command == "run" else serve_api)


def _serve(settings: Settings, serve: Callable[[Settings], Coroutine[Any, Any, None]]) -> int:
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except NoCluster:
        print(
            "session-operator: no cluster found: set KUBECONFIG to a kubeconfig file (or"
            " create ~/.kube/config), or run it in a Pod of the cluster",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except ConfigException as error:
        print(f"session-operator: cannot use the kubeconfig: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        ports = f"{settings.api_port}" + (
            f" or {settings.metrics_port}" if settings.metrics_port else ""
        )
        print(
            f"session-operator: cannot listen on {settings.api_host} port {ports}: already in"
            " use; choose another with XG2G_SESSION_API_PORT (XG2G_SESSION_METRICS_PORT)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _heartbeat(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="session-operator heartbeat: %(message)s")
    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    try:
        client = HeartbeatClient(
            args.url,
            args.session,
            token_file=args.token_file,
            ssl=context,
            allow_http=args.allow_http,
        )
    except InsecureUrl as refusal:
        print(f"session-operator heartbeat: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_beat_once(client) if args.once else _keep_alive(client))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _beat_once(client: HeartbeatClient) -> int:
    async with client:
        try:
            ack = await client.beat()
        except HeartbeatFailed as failure:
            print(f"session-operator heartbeat: {failure}", file=sys.stderr)
            return EXIT_SESSION_ENDED if failure.session_ended else EXIT_FAILED
    print(ack.model_dump_json())
    return 0


async def _keep_alive(client: HeartbeatClient) -> int:
    async with client:
        await client.keep_alive()  # it logs why the session ended
    return EXIT_SESSION_ENDED


if __name__ == "__main__":
    sys.exit(main())
