"""`make test` and `make run` start by checking the machine, one line per prerequisite: what
everything needs stops the run, what only some tiers need says what still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack import check_prerequisites as prerequisites

REPO = Path(__file__).resolve().parents[2]
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'


def test_python_older_than_3_11_is_refused_in_one_line() -> None:
    assert prerequisites.check_python((3, 11, 0)) is None
    line = prerequisites.check_python((3, 9, 18))
    assert line is not None
    assert "Python 3.9.18" in line
    assert "3.11 or newer" in line
    assert "\n" not in line


def test_go_must_be_there_and_as_new_as_the_wrapper_modules_ask() -> None:
    needed = prerequisites.go_needed(REPO)
    assert prerequisites.version_tuple(needed) >= (1, 22)
    assert prerequisites.check_go("go1.99.0", needed) is None
    absent = prerequisites.check_go(None, needed)
    assert absent is not None
    assert absent.startswith("go is not on PATH: Go ")
    old = prerequisites.check_go("go1.20.3", needed)
    assert old == f"go1.20.3 is too old: Go {needed} or newer is needed by hack/*/go.mod"


def test_a_debian_machine_as_root_needs_no_word() -> None:
    assert prerequisites.machine_lines("test", "Linux", DEBIAN, root=True) == []


def test_without_root_the_line_says_what_still_works() -> None:
    [line] = prerequisites.machine_lines("run", "Linux", DEBIAN, root=False)
    assert line.startswith("not root: without root `make run` works, `make run NODE=1` does not")
    [line] = prerequisites.machine_lines("test", "Linux", DEBIAN, root=False)
    assert "node tier" in line
    assert "the unit tier and the rest of e2e run" in line


def test_macos_learns_in_one_line_what_works_there() -> None:
    [line] = prerequisites.machine_lines("test", "Darwin", "", root=False)
    assert line.startswith("macOS: the image and the node need Linux with Debian's apt-get")
    assert "`make run` (no node) and `make test-unit`" in line


def test_a_linux_without_apt_says_which_packages_to_bring() -> None:
    fedora = 'ID=fedora\nPRETTY_NAME="Fedora Linux 41"\n'
    [line] = prerequisites.machine_lines("test", "Linux", fedora, root=True)
    assert "not a Debian-like system" in line
    assert "debootstrap" in line


def machine(
    monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...] = (), go: str = "go1.26.8"
) -> None:
    """A Debian machine, as root, with every tool but *missing* and Go *go*."""
    tools = {"go", "make", "git"} - set(missing)
    monkeypatch.setattr(
        prerequisites.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in tools else None
    )
    monkeypatch.setattr(prerequisites, "_output", lambda argv: go)
    monkeypatch.setattr(prerequisites.platform, "system", lambda: "Linux")
    monkeypatch.setattr(prerequisites.os, "geteuid", lambda: 0)


def test_a_machine_with_everything_passes_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine(monkeypatch)
    assert prerequisites.main(["--for", "run"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert out.startswith("prerequisites: ")
    assert "go1.26.8 (Go " in out


def test_a_missing_tool_stops_the_run_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine(monkeypatch, missing=("git",))
    assert prerequisites.main(["--for", "test"]) == 1
    _, err = capsys.readouterr()
    assert "prerequisites: git is not on PATH: install it (Debian package git)" in err.splitlines()
