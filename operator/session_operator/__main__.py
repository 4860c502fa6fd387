"""``session-operator``: run the operator, the heartbeat API alone, or send heartbeats."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from session_operator import __version__
from session_operator.config import ConfigError, Settings, load_settings, settings_help
from session_operator.heartbeat_cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_heartbeat_command,
    run_heartbeat,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``session-operator`` console script."""
    parser = argparse.ArgumentParser(prog="session-operator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the operator and its HTTP server",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve = commands.add_parser(
        "serve-api",
        help="serve only the heartbeat API (no lifecycle writes; any replicas)",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for command in (run, serve):
        command.add_argument("--config", type=Path, help="YAML configuration file")
        command.add_argument(
            "--namespace", help="watch only this namespace (default: all namespaces)"
        )
    add_heartbeat_command(commands)
    args = parser.parse_args(argv)
    if args.command == "heartbeat":
        return run_heartbeat(args)
    try:
        settings = load_settings(args.config, namespace=args.namespace)
    except ConfigError as error:
        for problem in error.problems:
            print(f"session-operator: invalid configuration: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _serve(settings, args.command)
    except KeyboardInterrupt:  # Ctrl-C while kopf and the client library load
        return EXIT_INTERRUPTED


def _serve(settings: Settings, command: str) -> int:
    # Only the operator's commands load kopf and the Kubernetes client (a second or more):
    # the heartbeat command starts without them.
    from kubernetes_asyncio.config import ConfigException

    from session_operator.k8s.connection import NoCluster
    from session_operator.runtime import configure_logging, run_operator, serve_api

    serve: Callable[[Settings], Coroutine[Any, Any, None]] = (
        run_operator if command == "run" else serve_api
    )
    configure_logging(settings)
    freeze_loaded_objects()
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except NoCluster:
        print(f"session-operator: {_no_cluster_fix()}", file=sys.stderr)
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


def freeze_loaded_objects() -> None:
    """Keep what is loaded so far (modules, classes, the configuration) out of every later
    garbage collection.

    The operator's imports (kopf, the Kubernetes client, aiohttp) leave about 90,000
    tracked objects that live as long as the process. Each full collection scanned them
    all, about 30 ms on one core, more when the CPU is shared; a heartbeat that arrives
    during a collection waits for it. Frozen, they are no longer scanned. Objects made
    later (the Session store, connections) are collected as before.
    """
    gc.collect()
    gc.freeze()


def _no_cluster_fix() -> str:
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        return (
            f"KUBECONFIG={kubeconfig} names no file: point it at a kubeconfig file, or unset"
            " it to use ~/.kube/config"
        )
    return (
        "no cluster found: set KUBECONFIG to a kubeconfig file (or create ~/.kube/config),"
        " or run it in a Pod of the cluster"
    )


if __name__ == "__main__":
    sys.exit(main())
