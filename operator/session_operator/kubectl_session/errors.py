"""Failures as the one line ``kubectl session`` prints: ``error: <what went wrong>``."""

from __future__ import annotations

import os
import re

import aiohttp

from session_operator.k8s.errors import ApiUnavailable, KubernetesError, Rejected

_STATUS_PREFIX = re.compile(r"^\d{3}: ")


class CommandError(Exception):
    """A failure the person can act on, said in one sentence (exit 1)."""


def one_line(text: str) -> str:
    """*text* with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


def apiserver_failure(error: KubernetesError, server: str) -> str:
    """What an apiserver call's failure means, in one sentence: the apiserver's own message
    for a refusal, the reason for a connection that failed."""
    if isinstance(error, ApiUnavailable):
        cause = error.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError) and cause.os_error.errno:
            reason = os.strerror(cause.os_error.errno).lower()
        elif isinstance(cause, TimeoutError):
            reason = "no answer in time"
        elif cause is not None:
            reason = str(cause) or type(cause).__name__
        else:
            reason = str(error)
        return one_line(f"cannot reach the apiserver at {server}: {reason}")
    if isinstance(error, Rejected):
        return one_line(_STATUS_PREFIX.sub("", str(error)))
    return one_line(str(error))
