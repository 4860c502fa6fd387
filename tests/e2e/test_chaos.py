"""``make chaos`` and ``make soak`` (issue: survive faults), run the way users run them.

Each fault runs in a harness of its own (``python -m chaos --faults F``: a local control
plane, two operator replicas, clients in a separate process) and must hold every invariant;
the soak is the ``slow`` tier's 10-minute run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos.faults import FAULTS

REPO = Path(__file__).resolve().parents[2]
FAULT_BUDGET = 600.0
SOAK_MINUTES = 10


def run_chaos(tmp_path: Path, *args: str, budget: float) -> dict[str, Any]:
    """Run ``python -m chaos ARGS``; assert it passed; its JSON report."""
    report = tmp_path / "chaos.json"
    run = subprocess.run(
        [sys.executable, "-m", "chaos", *args, "--json", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert "| pass" in run.stdout
    document: dict[str, Any] = json.loads(report.read_text())
    return document


@pytest.mark.chaos
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_holds_every_invariant(fault: str, tmp_path: Path) -> None:
    report = run_chaos(tmp_path, "--faults", fault, budget=FAULT_BUDGET)
    (result,) = report["faults"]
    verdict = result["verdict"]
    assert result["passed"], verdict["findings"]
    assert verdict["sessions"] >= 24
    if fault != "conflicting-burst":
        assert result["injections"], "the fault was injected and recovered from"


@pytest.mark.slow
def test_soak_holds_every_invariant_and_memory_stays_flat(tmp_path: Path) -> None:
    report = run_chaos(tmp_path, "--soak", f"{SOAK_MINUTES}m", budget=SOAK_MINUTES * 60 + 300)
    soak = report["soak"]
    assert soak["passed"], soak
    assert soak["verdict"]["sessions"] > 100, "sessions came and went all along"
    assert soak["memory"], "resident memory was sampled after warm-up"
