"""The operator image's default base: Debian bookworm with Python 3.11, made here.

No registry can be reached from every machine that builds the image, so the base is made
from Debian packages: ``debootstrap`` (variant ``minbase``, plus ``python3`` and
``python3-venv``) from the Debian mirror, without documentation (the copyright files
stay), manual pages, translations and package lists, imported with ``docker import``.

It is pinned by ``hack/image/debian-base.lock``, every package with its version. A base
made from a mirror that has moved on (a point release, a security update) is refused;
``make base-lock`` makes it anew and records the mirror's versions instead.

The result is cached outside the repository, in
``~/.cache/session-lease-operator/images/debian-<suite>-<key>/``: a ``docker save``
tarball and its image id. The key hashes debootstrap's inputs, the architecture and the
lock, so a warm machine finds the image in the engine, or loads the tarball, and runs no
debootstrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.binaries import find_repo_root, project_cache
from harness.debian_packages import DEBOOTSTRAP, DPKG_QUERY, SYSTEM_PATH, TAR
from harness.engine import DockerEngine
from harness.processes import unmount_under

BASE_REPOSITORY = "session-lease-operator-base"
LOCK_FILE = Path("hack/image/debian-base.lock")
"""The lock, relative to the repository root."""
IMAGE_ARCHIVE = "image.tar"
IMAGE_ID = "image-id"
# What an imported root filesystem lacks and a registry image has: a PATH and a locale.
IMAGE_SETTINGS = (f"ENV PATH={SYSTEM_PATH}", "ENV LANG=C.UTF-8")
# Removed from the root filesystem: nothing at run time reads them.
UNUSED_DIRECTORIES = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)
# debootstrap copies the machine's own; a container gets them from its engine.
MACHINE_FILES = ("etc/hostname", "etc/resolv.conf")


class BaseImageError(RuntimeError):
    """The base could not be made, or it differs from its lock."""


@dataclass(frozen=True)
class DebianBase:
    """What debootstrap is given, and the lock its result must match."""

    lock: Path
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3", "python3-venv")

    def debootstrap_args(self, target: Path) -> list[str]:
        """debootstrap's arguments that make the root filesystem in *target* (pure: the
        program is looked up only when it is run)."""
        return [
            f"--variant={self.variant}",
            f"--include={','.join(self.include)}",
            self.suite,
            str(target),
            self.mirror,
        ]

    def key(self) -> str:
        """A hash of everything the base is made from, its lock included."""
        inputs = [self.suite, self.mirror, self.variant, self.include, platform.machine()]
        text = json.dumps(inputs) + self.lock.read_text(encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        """The image's name in the engine."""
        return f"{BASE_REPOSITORY}:{self.suite}-{self.key()}"

    @property
    def cache_dir(self) -> Path:
        """Where the image's tarball and id are kept."""
        return project_cache() / "images" / f"debian-{self.suite}-{self.key()}"


def default_base(repo_root: Path | None = None) -> DebianBase:
    """The base the Dockerfile is built on by default, pinned by the repository's lock."""
    return DebianBase(lock=find_repo_root(repo_root) / LOCK_FILE)


def ensure_base(engine: DockerEngine, base: DebianBase) -> str:
    """The base's tag in *engine*: there already, loaded from the cache, or made (minutes,
    with progress)."""
    if not (base.cache_dir / IMAGE_ARCHIVE).is_file():
        _make(engine, base, relock=False)
    recorded = (base.cache_dir / IMAGE_ID).read_text(encoding="utf-8").strip()
    if engine.image_id(base.tag) != recorded:
        print(f"loading the base image {base.tag} from {base.cache_dir}", flush=True)
        engine.docker("load", f"--input={base.cache_dir / IMAGE_ARCHIVE}")
        if engine.image_id(base.tag) != recorded:
            raise BaseImageError(f"{base.cache_dir / IMAGE_ARCHIVE} does not hold {recorded}")
    return base.tag


def relock_base(engine: DockerEngine, base: DebianBase) -> str:
    """Make the base anew from the mirror and record its packages in the lock; its tag."""
    _make(engine, base, relock=True)
    return base.tag


def locked_packages(lock: Path) -> dict[str, str]:
    """The lock's packages: name to version."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    pins = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name: version for name, version in pins}


def _make(engine: DockerEngine, base: DebianBase, relock: bool) -> None:
    images = project_cache() / "images"
    images.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".debootstrap-", dir=images))
    try:
        rootfs = work / "rootfs"
        _debootstrap(base, rootfs)
        packages = _installed_packages(rootfs)
        if relock:
            base.lock.write_text(lock_text(base, packages), encoding="utf-8")
            print(f"recorded {len(packages)} package versions in {base.lock}", flush=True)
        else:
            check_against_lock(base, packages)
        _strip(rootfs)
        archive = work / "rootfs.tar"
        subprocess.run(
            [
                str(TAR.path()), "--create", f"--file={archive}", "--numeric-owner",
                f"--directory={rootfs}",
                # The engine gives every container its own /dev, /proc and /sys.
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", ".",
            ],
            check=True,
        )  # fmt: skip
        changes = [f"--change={setting}" for setting in IMAGE_SETTINGS]
        engine.docker("import", *changes, str(archive), base.tag)
        ready = work / "cache"
        ready.mkdir()
        engine.docker("save", f"--output={ready / IMAGE_ARCHIVE}", base.tag)
        (ready / IMAGE_ID).write_text(f"{engine.image_id(base.tag)}\n", encoding="utf-8")
        shutil.copyfile(base.lock, ready / "packages.lock")
        shutil.rmtree(base.cache_dir, ignore_errors=True)
        ready.rename(base.cache_dir)
        print(f"base image {base.tag} cached in {base.cache_dir}", flush=True)
    finally:
        unmount_under(work)  # debootstrap's /proc and /sys, should it have failed inside
        shutil.rmtree(work, ignore_errors=True)


def _debootstrap(base: DebianBase, rootfs: Path) -> None:
    """Run debootstrap, showing one line per phase (retrieving, unpacking, configuring)."""
    argv = [str(DEBOOTSTRAP.path()), *base.debootstrap_args(rootfs)]
    print(f"making the Debian base (first time only; about a minute): {' '.join(argv)}", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive"}
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    tail: list[str] = []
    phase = ""
    for line in process.stdout:
        tail = [*tail[-30:], line]
        words = line.split()
        # Each package is retrieved, then validated: one phase.
        if len(words) >= 2 and words[0] == "I:" and words[1] not in (phase, "Validating"):
            phase = words[1]
            print(f"  {time.monotonic() - started:5.0f}s  {line.rstrip()}", flush=True)
    if process.wait() != 0:
        sys.stdout.write("".join(tail))
        raise BaseImageError(f"debootstrap failed with exit code {process.returncode}")


def _installed_packages(rootfs: Path) -> dict[str, str]:
    result = subprocess.run(
        [
            str(DPKG_QUERY.path()), f"--admindir={rootfs / 'var/lib/dpkg'}", "--show",
            "--showformat=${Package}=${Version}\\n",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pins = [line.split("=", 1) for line in result.stdout.splitlines() if line]
    return {name: version for name, version in sorted(pins)}


def lock_text(base: DebianBase, packages: dict[str, str]) -> str:
    """The lock file recording *packages* (name to version) as made for *base*."""
    command = " ".join(base.debootstrap_args(Path("ROOT")))
    header = [
        "# The Debian packages of the operator image's base, with their versions (docs/image.md).",
        f"# Made by: debootstrap {command}",
        "# `make base-lock` makes the base anew and rewrites this file from the mirror.",
    ]
    return "\n".join([*header, *(f"{name}={version}" for name, version in packages.items())]) + "\n"


def check_against_lock(base: DebianBase, packages: dict[str, str]) -> None:
    """:class:`BaseImageError`, naming the differences, unless *packages* are the lock's."""
    locked = locked_packages(base.lock)
    differences = [
        f"{name} {locked.get(name, 'absent')} locked, {packages.get(name, 'absent')} made"
        for name in sorted(set(locked) | set(packages))
        if locked.get(name) != packages.get(name)
    ]
    if differences:
        shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
        raise BaseImageError(
            f"the Debian base made from {base.mirror} differs from {base.lock} ({shown}):"
            " `make base-lock` takes the mirror's versions (then commit the lock)"
        )


def _strip(rootfs: Path) -> None:
    for relative in UNUSED_DIRECTORIES:
        shutil.rmtree(rootfs / relative, ignore_errors=True)
        (rootfs / relative).mkdir(parents=True, exist_ok=True)
    for directory, _, files in os.walk(rootfs / "usr/share/doc"):
        for name in files:
            if name != "copyright":
                os.unlink(os.path.join(directory, name))
    for relative in MACHINE_FILES:
        (rootfs / relative).write_text("", encoding="utf-8")
