"""Everything a test tier uses is provided by ``make`` before its first test: each machine
program of the harness is listed, the prepare step reports what is missing, and the guard
fails a unit test that reaches for a machine program, on every machine."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import prepare as prepare_module
from harness.debian_packages import PackageError
from harness.prepare import _Step
from harness.provisions import DEBIAN_PROGRAMS, E2E, TIERS, UNIT, Provision, provisions

REPO = Path(__file__).resolve().parents[2]


def programs_declared_in_the_harness() -> set[tuple[str, str]]:
    """Every ``Program(name, package, ...)`` written in harness/, as (name, package)."""
    found = set()
    for source in sorted((REPO / "harness").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Program":
                name, package = (arg.value for arg in node.args[:2])  # type: ignore[attr-defined]
                found.add((name, package))
    return found


def test_every_machine_program_of_the_harness_is_provided_to_the_e2e_tier() -> None:
    declared = programs_declared_in_the_harness()
    assert len(declared) >= 10
    assert declared <= {(program.name, program.package) for program in DEBIAN_PROGRAMS}
    assert ("debootstrap", "debootstrap") in declared


def test_each_provision_names_a_known_tier_and_the_unit_tier_gets_no_machine_program() -> None:
    items = provisions(REPO)
    assert all(set(item.tiers) <= set(TIERS) for item in items)
    unit = [item.name for item in items if UNIT in item.tiers]
    assert unit
    assert all("Debian package" not in name for name in unit)
    assert any("debootstrap" in item.name and E2E in item.tiers for item in items)


def run_prepare(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], present: bool
) -> tuple[int, str]:
    """prepare over two steps (one refused by the machine) and one provision of each."""

    def refused() -> None:
        raise PackageError("only root can install debootstrap")

    steps = [_Step("debian", "Debian packages", refused), _Step("tools", "helm", lambda: None)]
    items = [
        Provision("debootstrap (Debian package debootstrap)", (E2E,), "debian", lambda: False),
        Provision("/cache/helm", TIERS, "tools", lambda: present),
    ]
    monkeypatch.setattr(prepare_module, "_steps", lambda tiers, repo_root: steps)
    monkeypatch.setattr(prepare_module, "for_tiers", lambda tiers, repo_root: items)
    code = prepare_module.prepare(TIERS)
    return code, capsys.readouterr().out


def test_prepare_says_what_the_machine_refused_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_prepare(monkeypatch, capsys, present=True)
    assert code == 0
    assert (
        "prepare: not provided: debootstrap (Debian package debootstrap) (only root can install"
        " debootstrap); the tests that need it skip here and fail in CI"
    ) in out.splitlines()
    assert "[1/2] Debian packages ..." in out


def test_prepare_fails_when_a_step_leaves_out_what_it_should_provide(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_prepare(monkeypatch, capsys, present=False)
    assert code == 1
    assert "prepare: missing after its step: /cache/helm" in out.splitlines()


GUARDED = """
import pytest
from harness.base_image import DEBOOTSTRAP
from harness.binaries import ensure_tool, go_tool

pytestmark = pytest.mark.{tier}


def test_looks_up_a_machine_program() -> None:
    DEBOOTSTRAP.find()


def test_builds_a_tool() -> None:
    ensure_tool(go_tool("helm"))
"""


def run_guarded(tmp_path: Path, tier: str) -> str:
    """Run two tests of *tier* that reach past what ``make`` gives it, under the guard."""
    test_file = tmp_path / f"test_guarded_{tier}.py"
    test_file.write_text(GUARDED.replace("{tier}", tier))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "--rootdir", str(tmp_path), str(test_file)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "XG2G_BIN_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    return result.stdout


def test_a_unit_test_that_looks_up_a_machine_program_fails_on_every_machine(
    tmp_path: Path,
) -> None:
    out = run_guarded(tmp_path, UNIT)
    assert "a unit test looked up the machine program debootstrap" in out
    assert "a test tried to build helm" in out
    assert "2 failed" in out


def test_no_test_builds_what_prepare_did_not(tmp_path: Path) -> None:
    out = run_guarded(tmp_path, E2E)
    assert "a test tried to build helm: `python -m harness prepare` provides that" in out
    assert "1 failed, 1 passed" in out
