"""The image tooling installs missing Debian packages only as root, and says in one line
what to do when it cannot; the engine refuses to start without root or without dockerd."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import debian_packages
from harness.debian_packages import PackageError, Program, ensure_installed
from harness.engine import DockerEngine, EngineError

pytestmark = pytest.mark.unit

ABSENT = Program("xg2g-no-such-program", "xg2g-no-such-package")


def test_programs_are_found_by_absolute_path_whatever_the_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = Program("sh", "dash").find()
    assert found is not None
    assert found.is_absolute()
    assert ABSENT.find() is None


def test_nothing_is_installed_when_nothing_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian_packages, "APT_GET", Path("/nonexistent/apt-get"))
    ensure_installed([Program("sh", "dash")])


def test_a_missing_package_without_root_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(debian_packages.os, "geteuid", lambda: 1000)
    with pytest.raises(PackageError) as refused:
        ensure_installed([ABSENT, Program("sh", "dash")])
    assert str(refused.value) == (
        "the Debian packages xg2g-no-such-package are needed and only root can install them:"
        " run `apt-get install -y xg2g-no-such-package` as root, or this command as root"
    )


def test_a_missing_package_without_apt_get_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian_packages.os, "geteuid", lambda: 0)
    monkeypatch.setattr(debian_packages, "APT_GET", Path("/nonexistent/apt-get"))
    with pytest.raises(PackageError, match="/nonexistent/apt-get is missing"):
        ensure_installed([ABSENT])


def test_the_engine_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.engine.os.geteuid", lambda: 1000)
    with pytest.raises(EngineError, match="dockerd needs root"):
        DockerEngine().start()


def test_a_plugin_is_found_in_its_own_directory_and_nowhere_else(tmp_path: Path) -> None:
    plugin = tmp_path / "bridge"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert Program("bridge", "containernetworking-plugins", str(tmp_path)).find() == plugin
    assert Program("sh", "dash", str(tmp_path)).find() is None
