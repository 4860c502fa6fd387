"""The operator as a child process on a free loopback port (used by the e2e tests and the bench).

Its output goes to a log file, so runs stay quiet; the file's tail is shown when it fails.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp

from harness.cluster import free_port

READY_POLL_SECONDS = 0.1
"""The pause between two probes of ``/readyz`` while the operator starts."""


class OperatorFailed(RuntimeError):
    """The operator exited or did not become ready."""


class OperatorProcess:
    """``session-operator COMMAND`` against *kubeconfig*, serving on a free loopback port."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        command: str = "run",
        tls: ssl.SSLContext | None = None,
        log_level: str = "INFO",
        port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.port = port or free_port()
        self._env = dict(env or {})
        self._command = command
        self.tls = tls
        """The client context trusting the server's certificate; ``None`` for plain HTTP."""
        self._log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment given to the process beside the inherited one."""
        return dict(self._env)

    @property
    def url(self) -> str:
        """Base URL of the HTTP server (HTTPS when started with a *tls* context)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._process is not None, "the operator is not started"
        return self._process.pid

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`start`)."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "XG2G_SESSION_API_HOST": "127.0.0.1",
            "XG2G_SESSION_API_PORT": str(self.port),
            "XG2G_SESSION_LOG_FORMAT": "text",
            "XG2G_SESSION_LOG_LEVEL": self._log_level,
            **self._env,
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "session_operator", self._command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, within: float = 30.0) -> None:
        """Start the process and wait until ``/readyz`` answers 200."""
        self.spawn()
        for _ in self._readiness_probes(within):
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(READY_POLL_SECONDS)

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200 without blocking the event loop (after
        :meth:`spawn`); :class:`OperatorFailed` if the process exits first."""
        for _ in self._readiness_probes(within):
            try:
                async with http.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(READY_POLL_SECONDS)

    def _readiness_probes(self, within: float) -> Iterator[None]:
        """One turn per probe of ``/readyz`` (the caller probes, its own way, and leaves the
        loop once ready) for *within* seconds. :class:`OperatorFailed` if the process exits
        first, or once the time is up (the process is stopped then)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise OperatorFailed(f"the operator exited at start:\n{self.log_tail()}")
            yield
        self.stop()
        raise OperatorFailed(f"the operator was not ready after {within:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        """Whether the process is running."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if not self.alive():
            return
        assert self._process is not None
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no Lease release."""
        if self.alive():
            assert self._process is not None
            self._process.kill()
            self._process.wait()

    def get(self, path: str) -> tuple[int, str]:
        """GET *path* from the HTTP server: (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5, context=self.tls) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return f"(no log at {self.log_path})"
