"""Check what the machine must bring before ``make test`` or ``make run`` builds anything.

Run with the base interpreter (standard library only; it must parse on an old Python to
say that it is old). Each prerequisite gets one line:

* needed by everything: Python 3.11 or newer, the Go that the wrapper modules under
  ``hack/`` ask for (they build the control plane and the tools), make and git. A missing
  one stops here (exit 1), naming what to install.
* needed by some tiers only: Linux with Debian's apt-get (the image's and the node's
  Debian packages), and root (the node, the Docker engine of the image). Without them the
  line says what still works, and the run goes on: those tests skip saying why (in CI
  they fail).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 11)
APT_GET = Path("/usr/bin/apt-get")
WITHOUT_ROOT = {
    "test": "without root the node tier (tests/e2e/test_node*.py) and the image tests skip"
    " (in CI they fail); the unit tier and the rest of e2e run",
    "run": "without root `make run` works, `make run NODE=1` does not (the node needs root)",
}


def version_tuple(text: str) -> tuple[int, ...]:
    """``1.26.8`` (or ``go1.26.8``) as ``(1, 26, 8)``."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def go_needed(repo: Path = REPO) -> str:
    """The newest ``go`` directive of the wrapper modules under ``hack/``."""
    found = []
    for go_mod in sorted(repo.glob("hack/**/go.mod")):
        match = re.search(r"^go (\S+)$", go_mod.read_text(encoding="utf-8"), re.MULTILINE)
        if match:
            found.append(match.group(1))
    return max(found, key=version_tuple, default="1.22")


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> str | None:
    """None when this Python is new enough, else the line that says so."""
    if version >= MIN_PYTHON:
        return None
    shown, needed = ".".join(map(str, version)), ".".join(map(str, MIN_PYTHON))
    return (
        f"Python {shown} ({sys.executable}) is too old: {needed} or newer is needed;"
        f" name one with PYTHON=python{needed} make ..."
    )


def check_go(installed: str | None, needed: str) -> str | None:
    """None when *installed* (``go1.26.8``, or None when absent) is at least *needed*."""
    if not installed:
        return (
            f"go is not on PATH: Go {needed} or newer builds the control plane and the tools"
            " (https://go.dev/dl, or Debian's golang package where it is new enough)"
        )
    if version_tuple(installed) < version_tuple(needed):
        return f"{installed} is too old: Go {needed} or newer is needed by hack/*/go.mod"
    return None


def machine_lines(purpose: str, system: str, os_release: str, root: bool) -> list[str]:
    """The lines for the parts that only some tiers need: Linux with apt-get, and root."""
    lines = []
    if system != "Linux":
        name = "macOS" if system == "Darwin" else system
        lines.append(
            f"{name}: the image and the node need Linux with Debian's apt-get;"
            " here only `make run` (no node) and `make test-unit` can work, and they are"
            " tried on Linux only"
        )
        return lines
    like = " ".join(re.findall(r"^ID(?:_LIKE)?=\"?([^\"\n]*)", os_release, re.MULTILINE))
    if "debian" not in like.split() or not APT_GET.is_file():
        lines.append(
            f"{APT_GET} missing or not a Debian-like system: the Debian packages of the"
            " image and the node cannot be installed; install docker.io, debootstrap,"
            " containerd, runc, iptables, containernetworking-plugins yourself, or those"
            " tests skip"
        )
    if not root:
        lines.append(f"not root: {WITHOUT_ROOT[purpose]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print one line per finding; exit 1 when something everything needs is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--for", dest="purpose", choices=sorted(WITHOUT_ROOT), default="test")
    args = parser.parse_args(argv)
    needed = go_needed()
    go_version = _output(["go", "env", "GOVERSION"]) if shutil.which("go") else None
    missing = [line for line in (check_python(), check_go(go_version, needed)) if line]
    missing += [
        f"{tool} is not on PATH: install it (Debian package {tool})"
        for tool in ("make", "git")
        if shutil.which(tool) is None
    ]
    os_release = Path("/etc/os-release")
    release = os_release.read_text(encoding="utf-8") if os_release.is_file() else ""
    limited = machine_lines(args.purpose, platform.system(), release, os.geteuid() == 0)
    for line in missing + limited:
        print(f"prerequisites: {line}", file=sys.stderr)
    if missing:
        return 1
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', release, re.MULTILINE)
    system = pretty.group(1) if pretty else platform.system()
    python = ".".join(map(str, sys.version_info[:3]))
    print(
        f"prerequisites: {system}, {'root' if os.geteuid() == 0 else 'not root'},"
        f" Python {python}, {go_version} (Go {needed} needed), make, git",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
