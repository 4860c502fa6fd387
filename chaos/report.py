"""The table ``make chaos`` and ``make soak`` print, and the same figures as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from chaos.faults import FaultResult
from chaos.invariants import Verdict
from chaos.soak import SoakResult
from harness.machine import Machine
from harness.table import render_table

HEADERS = (
    "fault", "sessions", "wrongful", "missed", "orphans", "revived", "reasons", "events",
    "rules", "worst expiry lag", "recovery", "result",
)  # fmt: skip


def _seconds(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _row(name: str, verdict: Verdict, recovery: str, passed: bool) -> tuple[str, ...]:
    counts = (
        verdict.sessions, verdict.wrongful, verdict.missed, verdict.orphans, verdict.revived,
        verdict.reasons, verdict.events, verdict.rules,
    )  # fmt: skip
    result = "pass" if passed else "FAIL"
    return (name, *map(str, counts), _seconds(verdict.worst_lag, 2), recovery, result)


def render(
    machine: Machine,
    faults: Sequence[FaultResult],
    soak: SoakResult | None = None,
) -> str:
    """The header, one row per fault (and the soak), then what went wrong, if anything."""
    rows = [
        _row(result.fault, result.verdict, _seconds(result.recovery), result.verdict.passed)
        for result in faults
    ]
    if soak is not None:
        rows.append(_row(f"soak {soak.seconds / 60:.0f} min", soak.verdict, "-", soak.passed))
    lines = [f"machine: {machine.describe()}", "", render_table(rows, HEADERS), ""]
    for result in faults:
        for injection in result.injections:
            lines.append(
                f"- {result.fault}: {injection.what}, whole again after {injection.recovery:.1f} s"
            )
        lines += [f"- {result.fault}: {remark}" for remark in result.remarks]
        lines += [f"- {result.fault}: {finding}" for finding in result.verdict.findings]
    if soak is not None:
        for trend in soak.memory:
            verdict = "held" if trend.held else "GREW"
            lines.append(
                f"- soak: {trend.instance} RSS {trend.after_warm_up:.0f} MiB after warm-up,"
                f" {trend.at_end:.0f} MiB at the end ({trend.growth:+.1%}, {verdict})"
            )
        lines += [f"- soak: {finding}" for finding in soak.verdict.findings]
    return "\n".join(lines)


def as_json(
    machine: Machine, faults: Sequence[FaultResult], soak: SoakResult | None
) -> dict[str, Any]:
    """The figures of the table, by fault."""
    document: dict[str, Any] = {
        "machine": machine.as_dict(),
        "faults": [
            {
                "fault": result.fault,
                "passed": result.verdict.passed,
                "verdict": asdict(result.verdict),
                "injections": [asdict(injection) for injection in result.injections],
                "remarks": result.remarks,
            }
            for result in faults
        ],
    }
    if soak is not None:
        document["soak"] = {
            "passed": soak.passed,
            "seconds": soak.seconds,
            "verdict": asdict(soak.verdict),
            "memory": [asdict(trend) | {"growth": trend.growth} for trend in soak.memory],
        }
    return document
