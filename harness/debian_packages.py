"""The machine programs the image tooling runs, and their Debian packages.

The Docker engine (Debian's ``docker.io``: dockerd, containerd, runc, the docker client)
and ``debootstrap`` come from the machine's Debian archive, as Go comes from the machine.
They are installed with apt-get the first time they are needed, only if missing, and only
as root. Every program is run by its absolute path, found in the system directories, so a
restricted ``PATH`` (the tests') does not matter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin"
"""Where machine programs are looked for, Debian's own directories first (so Debian's
docker client, which matches its engine, wins over another one in /usr/local/bin). The
daemons get it as their ``PATH``: dockerd finds containerd and runc through it."""

APT_GET = Path("/usr/bin/apt-get")


class PackageError(RuntimeError):
    """A program is missing and its Debian package could not be installed."""


@dataclass(frozen=True)
class Program:
    """A machine program, and the Debian package that ships it."""

    name: str
    package: str
    search_path: str = SYSTEM_PATH
    """Where it is looked for (a plugin directory, say)."""

    def find(self) -> Path | None:
        """Its absolute path, or None when it is not installed."""
        found = shutil.which(self.name, path=self.search_path)
        return Path(found) if found else None

    def path(self) -> Path:
        """Its absolute path; :class:`PackageError` when it is not installed."""
        found = self.find()
        if found is None:
            raise PackageError(f"{self.name} is not installed (Debian package {self.package})")
        return found


DOCKERD = Program("dockerd", "docker.io")
DOCKER = Program("docker", "docker.io")
DEBOOTSTRAP = Program("debootstrap", "debootstrap")
TAR = Program("tar", "tar")
DPKG_QUERY = Program("dpkg-query", "dpkg")

ENGINE_PROGRAMS = (DOCKERD, DOCKER)
"""What the harness's Docker engine needs."""
IMAGE_PROGRAMS = (*ENGINE_PROGRAMS, DEBOOTSTRAP, TAR, DPKG_QUERY)
"""What ``make image`` needs to make its Debian base as well."""


def ensure_installed(programs: Iterable[Program]) -> None:
    """Install the packages of whichever *programs* are missing (apt-get, as root),
    showing apt-get's progress; :class:`PackageError` with one line when that cannot be."""
    packages = sorted({program.package for program in programs if program.find() is None})
    if not packages:
        return
    named = " ".join(packages)
    if os.geteuid() != 0:
        raise PackageError(
            f"the Debian packages {named} are needed and only root can install them:"
            f" run `apt-get install -y {named}` as root, or this command as root"
        )
    if not APT_GET.is_file():
        raise PackageError(f"the Debian packages {named} are needed and {APT_GET} is missing")
    _apt_get_install(packages)


def _apt_get_install(packages: list[str]) -> None:
    named = " ".join(packages)
    print(f"installing the Debian packages {named} with apt-get (first time only)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
    # A fresh machine may hold no package lists yet.
    for argv in ([APT_GET, "update"], [APT_GET, "install", "-y", *packages]):
        result = subprocess.run([str(arg) for arg in argv], env=env, check=False)
        if result.returncode != 0:
            raise PackageError(
                f"`apt-get {argv[1]}` failed with exit code {result.returncode}"
                f" while installing {named}"
            )
