"""Everything ``make test`` provides before its first test, by test tier.

A tier's tests may use only what is listed here for that tier: the Debian programs
``make`` installs, the binaries it builds into the cache, the images it makes.
``python -m harness prepare`` provides them in one visible step and then checks each one
(:mod:`harness.prepare`); the tests' guard (``tests/conftest.py``) fails a test that
reaches for anything a tier is not given, on every machine, warm or fresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.base_image import IMAGE_ARCHIVE, default_base
from harness.binaries import GoTool, go_tool, toolchain
from harness.debian_packages import IMAGE_PROGRAMS, Program
from harness.node import NODE_PROGRAMS

UNIT = "unit"
E2E = "e2e"
TIERS = (UNIT, E2E)
"""The test tiers, in the order ``make test`` runs them (``tests/unit``, ``tests/e2e``)."""

DEBIAN_PROGRAMS: tuple[Program, ...] = tuple(dict.fromkeys((*IMAGE_PROGRAMS, *NODE_PROGRAMS)))
"""Every machine program the harness runs: the image's and the node's. Only the e2e tier
is given them; a unit test never looks one up."""

TOOLS = ("helm", "kind", "prometheus")
"""The cached tools both tiers run: helm renders and installs the chart, kind's version and
``make``'s kind targets are checked, promtool checks and tests the chart's alerts and
prometheus scrapes the operator (with promtool, one module: ``hack/tools/prometheus``)."""


@dataclass(frozen=True)
class Provision:
    """One thing a test tier is given before its first test, and how to see it is there."""

    name: str
    tiers: tuple[str, ...]
    step: str
    """The step of :mod:`harness.prepare` that provides it."""
    present: Callable[[], bool]


def _program(program: Program) -> Provision:
    return Provision(
        f"{program.name} (Debian package {program.package})",
        (E2E,),
        "debian",
        lambda: program.find() is not None,
    )


def _binary(path: Path, tiers: tuple[str, ...], step: str) -> Provision:
    return Provision(str(path), tiers, step, lambda: os.access(path, os.X_OK))


def cached_tools(repo_root: Path | None = None) -> list[GoTool]:
    """The cached tools both tiers may run (:data:`TOOLS`)."""
    return [go_tool(name, repo_root) for name in TOOLS]


def provisions(repo_root: Path | None = None) -> list[Provision]:
    """Everything any tier is given, each with the tiers that need it."""
    chain = toolchain(repo_root=repo_root)
    kube = [chain.etcd, chain.kube_apiserver, chain.kube_controller_manager, chain.kubectl]
    node = [chain.kube_scheduler, chain.kubelet, chain.kube_proxy]
    base = default_base(repo_root)
    archive = base.cache_dir / IMAGE_ARCHIVE
    return [
        *(_program(program) for program in DEBIAN_PROGRAMS),
        *(_binary(path, (E2E,), "binaries") for path in (*kube, *node)),
        *(
            _binary(path, TIERS, "tools")
            for tool in cached_tools(repo_root)
            for path in tool.executables
        ),
        Provision(f"the image's Debian base ({archive})", (E2E,), "images", archive.is_file),
    ]


def for_tiers(tiers: tuple[str, ...], repo_root: Path | None = None) -> list[Provision]:
    """What *tiers* are given, each once."""
    return [item for item in provisions(repo_root) if set(item.tiers) & set(tiers)]
