"""The operator under test, with an asynchronous readiness wait for the bench's event loop."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from session_operator.devcluster.operator_process import OperatorFailed
from session_operator.devcluster.operator_process import OperatorProcess as _OperatorProcess

__all__ = ["OperatorFailed", "OperatorProcess"]


class OperatorProcess(_OperatorProcess):
    """The shared operator process, waited for without blocking the bench's loop."""

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200; :class:`OperatorFailed` if it exits first."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
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
