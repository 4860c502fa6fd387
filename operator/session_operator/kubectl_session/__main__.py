"""``kubectl-session``: the kubectl plugin ``kubectl session`` (docs/kubectl-session.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from session_operator.kubectl_session.arguments import build_parser

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kubectl-session`` console script; the exit code: 0 done, 1 a
    failure said in one line on stderr, 2 a command line argparse refused, 130 Ctrl-C."""
    args = build_parser().parse_args(argv)
    # The heartbeat client's retries are warnings: one line each.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        # Loaded only now: --help and a mistyped verb answer without the Kubernetes client.
        from session_operator.kubectl_session.commands import run
        from session_operator.kubectl_session.errors import CommandError, one_line

        try:
            return asyncio.run(run(args))
        except CommandError as error:
            print(f"error: {one_line(str(error))}", file=sys.stderr)
            return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # A reader that went away (`| head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
