"""The operator's log lines: text lines name their logger whole; JSON lines are kopf's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from session_operator.config import Settings
from session_operator.runtime import configure_logging

pytestmark = pytest.mark.unit

LONG_NAME = "session_operator.controller.reconciler"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put back what ``configure_logging`` changes: handlers, levels, propagation."""
    names = ("", "kopf", "aiohttp.access", "aiohttp.server", "asyncio")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]
    yield
    for logger, (level, propagate, handlers) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


def formatted(log_format: str) -> str:
    """A line of *LONG_NAME* as the handler ``configure_logging`` installs writes it."""
    before = set(logging.getLogger().handlers)
    configure_logging(Settings(log_format=log_format))
    (handler,) = set(logging.getLogger().handlers) - before
    record = logging.LogRecord(LONG_NAME, logging.INFO, __file__, 1, "lease extended", None, None)
    return handler.format(record)


def test_text_lines_name_a_long_logger_whole() -> None:
    line = formatted("text")
    assert f"] {LONG_NAME} [INFO    ] lease extended" in line
    assert line.startswith("[")


def test_json_lines_stay_kopfs_json_lines() -> None:
    line = json.loads(formatted("json"))
    assert line["message"] == "lease extended"
    assert line["severity"] == "info"
