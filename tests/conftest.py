"""Markers by folder, and the guard that a test uses only what ``make`` gave its tier.

Everything under tests/unit is `unit`, everything under tests/e2e is `e2e`. ``make test``
installs and builds what each tier needs before its first test (``python -m harness
prepare``, listed in :mod:`harness.provisions`). So that a test cannot pass on a warm
machine and fail on a fresh one, the guard holds on every machine:

* no test installs a Debian package, builds a binary or makes the image's base: that is
  the prepare step's job, and a test that reaches it names what the step is missing;
* a unit test looks up none of the harness's machine programs (debootstrap, dockerd,
  containerd, ...), and finds in the binary cache only the tools given to the unit tier.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from harness import base_image, binaries, debian_packages
from harness.debian_packages import Program
from harness.provisions import DEBIAN_PROGRAMS, UNIT, cached_tools

TESTS = Path(__file__).parent
REPO = TESTS.parent
_BIN_CACHE = os.environ.get("XG2G_BIN_CACHE")
"""The binary cache the e2e tier uses: the caller's."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder so `-m unit` / `-m e2e` select them."""
    for item in items:
        path = Path(str(item.fspath))
        if (TESTS / "unit") in path.parents:
            item.add_marker(pytest.mark.unit)
        elif (TESTS / "e2e") in path.parents:
            item.add_marker(pytest.mark.e2e)


def _not_prepared(what: str) -> NoReturn:
    pytest.fail(
        f"a test tried to {what}: `python -m harness prepare` provides that before any test"
        " (list it in harness/provisions.py and give it a step in harness/prepare.py)",
        pytrace=False,
    )


def _not_for_unit_tests(program: Program) -> NoReturn:
    pytest.fail(
        f"a unit test looked up the machine program {program.name} (Debian package"
        f" {program.package}), which `make test-unit` does not install: look a program up"
        " only where it is run, and test that in tests/e2e",
        pytrace=False,
    )


class _Guard:
    """What the running test's tier may use; set before each test's fixtures."""

    unit = False
    bin_cache: Path | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures: a unit test sees a binary cache of the unit tier's tools."""
    _Guard.unit = item.get_closest_marker(UNIT) is not None
    if _Guard.unit:
        os.environ["XG2G_BIN_CACHE"] = str(_unit_bin_cache())
    elif _BIN_CACHE is None:
        os.environ.pop("XG2G_BIN_CACHE", None)
    else:
        os.environ["XG2G_BIN_CACHE"] = _BIN_CACHE


def _unit_bin_cache() -> Path:
    """A binary cache holding only the unit tier's tools, linked from the real one."""
    if _Guard.bin_cache is None:
        view = Path(tempfile.mkdtemp(prefix="xg2g-unit-bin-cache-"))
        atexit.register(shutil.rmtree, view, ignore_errors=True)
        for tool in cached_tools(REPO):
            if tool.directory.is_dir():
                (view / tool.directory.name).symlink_to(tool.directory)
        _Guard.bin_cache = view
    return _Guard.bin_cache


@pytest.fixture(scope="session", autouse=True)
def only_what_make_provides() -> Iterator[None]:
    """The guard described in this module's docstring, around every fixture and test."""
    find = Program.find

    def find_outside_unit_tests(program: Program) -> Path | None:
        if _Guard.unit and program in DEBIAN_PROGRAMS:
            _not_for_unit_tests(program)
        return find(program)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            debian_packages,
            "_apt_get_install",
            lambda packages: _not_prepared(f"install the Debian packages {' '.join(packages)}"),
        )
        patch.setattr(
            binaries,
            "_build_module",
            lambda module, targets, *_, **__: _not_prepared(f"build {', '.join(targets)}"),
        )
        patch.setattr(
            base_image, "_make", lambda engine, base, relock: _not_prepared(f"make {base.tag}")
        )
        patch.setattr(Program, "find", find_outside_unit_tests)
        yield
