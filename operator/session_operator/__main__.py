"""``session-operator``: run the operator (more commands join as they are built)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from session_operator.config import ConfigError, Settings, load_settings
from session_operator.runtime import configure_logging, run_operator


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``session-operator`` console script."""
    parser = argparse.ArgumentParser(prog="session-operator")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator and its HTTP server")
    run.add_argument("--config", type=Path, help="YAML configuration file")
    run.add_argument("--namespace", help="watch only this namespace (default: all)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, namespace=args.namespace)
    except ConfigError as error:
        for problem in error.problems:
            print(f"session-operator: invalid configuration: {problem}", file=sys.stderr)
        return 2
    return _run(settings)


def _run(settings: Settings) -> int:
    configure_logging(settings)
    try:
        asyncio.run(run_operator(settings))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
