"""A replica leads only once it knows the outages the other replicas recorded."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from session_operator.call_health import CallHealth
from session_operator.controller.election import LeaderElector
from session_operator.k8s.outage_record import OutageMonitor
from session_operator.runtime import lead_once_outages_known, utc_now

pytestmark = pytest.mark.unit


class Elector:
    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.running.set()


async def test_the_elector_runs_only_once_the_outage_record_was_read() -> None:
    outages = OutageMonitor(CallHealth(utc_now))
    elector = Elector()
    leading = asyncio.create_task(lead_once_outages_known(cast(LeaderElector, elector), outages))
    await asyncio.sleep(0.01)
    assert not elector.running.is_set()
    outages.loaded.set()
    await asyncio.wait_for(leading, timeout=5)
    assert elector.running.is_set()
