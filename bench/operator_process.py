"""The operator under test: ``python -m session_operator run`` as a child process.

Its logs go to a file (the run stays quiet); the file's tail is shown if it fails to start.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from session_operator.devcluster.cluster import free_port


class OperatorFailed(RuntimeError):
    """The operator exited or did not become ready."""


class OperatorProcess:
    """The operator against *kubeconfig*, its HTTP server on a free loopback port."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.port = free_port()
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the operator's HTTP server (probes, metrics, heartbeat API)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The operator's process id."""
        assert self._process is not None, "the operator is not started"
        return self._process.pid

    def spawn(self) -> None:
        """Start the operator process (then :meth:`wait_ready`)."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "XG2G_SESSION_API_HOST": "127.0.0.1",
            "XG2G_SESSION_API_PORT": str(self.port),
            "XG2G_SESSION_LOG_LEVEL": "WARNING",
            "XG2G_SESSION_LOG_FORMAT": "text",
            **self._env,
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "session_operator", "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200; :class:`OperatorFailed` if it exits first."""
        assert self._process is not None, "spawn the operator first"
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OperatorFailed(f"the operator exited at start:\n{self.log_tail()}")
            try:
                async with http.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        self.stop()
        raise OperatorFailed(f"the operator was not ready after {within:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        """Whether the operator is still running."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the operator's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return f"(no log at {self.log_path})"
