"""The Debian base of the image is pinned: its cache key follows the lock, and a base
whose packages differ from the lock is refused, naming the differences."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import base_image
from harness.base_image import BaseImageError, DebianBase, locked_packages

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def base_with_lock(tmp_path: Path, packages: dict[str, str]) -> DebianBase:
    """A base whose lock, in *tmp_path*, pins *packages*."""
    base = DebianBase(lock=tmp_path / "debian-base.lock")
    base.lock.write_text(base_image.lock_text(base, packages))
    return base


def test_the_lock_written_for_a_base_reads_back_as_the_same_packages(tmp_path: Path) -> None:
    packages = {"python3.11": "3.11.2-6+deb12u8", "zlib1g": "1:1.2.13.dfsg-1"}
    base = base_with_lock(tmp_path, packages)
    assert locked_packages(base.lock) == packages
    assert "--variant=minbase --include=python3,python3-venv bookworm ROOT" in (
        base.lock.read_text()
    )


def test_the_repository_lock_pins_python_3_11_and_its_venv_module() -> None:
    packages = locked_packages(REPO / base_image.LOCK_FILE)
    assert packages["python3.11"].startswith("3.11.")
    assert "python3.11-venv" in packages


def test_the_cache_key_and_tag_change_with_the_lock(tmp_path: Path) -> None:
    base = base_with_lock(tmp_path, {"python3.11": "3.11.2-6+deb12u8"})
    before = (base.key(), base.tag, base.cache_dir)
    base_with_lock(tmp_path, {"python3.11": "3.11.2-6+deb12u9"})
    after = (base.key(), base.tag, base.cache_dir)
    assert before != after
    assert base.tag == f"session-lease-operator-base:bookworm-{base.key()}"
    assert base.cache_dir.name == f"debian-bookworm-{base.key()}"


def test_a_base_that_matches_its_lock_passes(tmp_path: Path) -> None:
    packages = {"libc6": "2.36-9+deb12u14", "python3.11": "3.11.2-6+deb12u8"}
    base_image.check_against_lock(base_with_lock(tmp_path, packages), packages)


def test_a_base_made_from_a_mirror_that_moved_on_is_refused_with_the_differences(
    tmp_path: Path,
) -> None:
    base = base_with_lock(tmp_path, {"libc6": "2.36-9+deb12u14", "python3.11": "3.11.2-6"})
    made = {"libc6": "2.36-9+deb12u15", "python3.11": "3.11.2-6", "tzdata": "2026b"}
    with pytest.raises(BaseImageError) as refused:
        base_image.check_against_lock(base, made)
    message = str(refused.value)
    assert "libc6 2.36-9+deb12u14 locked, 2.36-9+deb12u15 made" in message
    assert "tzdata absent locked, 2026b made" in message
    assert "python3.11" not in message
    assert "`make base-lock`" in message
    assert "\n" not in message
