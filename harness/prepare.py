"""``python -m harness prepare [TIER ...]``: install and build what the test tiers need.

One visible step each, in order: the Debian packages of the image and the node (apt-get,
as root), the control-plane and node binaries, the cached tools, then the images (the
image's Debian base, the operator image, the node's pause image) on the harness's Docker
engine. Each step is quick when what it provides is there already. Then every provision of
the tiers (:mod:`harness.provisions`) is checked, one line per gap.

A step the machine cannot take (not root, no apt-get, no Docker engine) is said in one
line, and so is every provision it leaves out: the tests that need those skip with the
reason, and fail in CI. Anything else that is missing afterwards is an error (exit 1): a
tier would run without something ``make`` was meant to give it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.base_image import BaseImageError, default_base, ensure_base
from harness.binaries import BuildError, ensure_built, ensure_tool, toolchain
from harness.debian_packages import PackageError, ensure_installed
from harness.engine import DockerEngine, EngineError
from harness.image import build_operator_image
from harness.node_images import NodeImageError, build_pause_image
from harness.provisions import (
    DEBIAN_PROGRAMS,
    E2E,
    TIERS,
    TOOLS,
    cached_tools,
    for_tiers,
)
from harness.table import render_table

MACHINE_REFUSALS = (PackageError, EngineError)
"""What a machine without root, apt-get or a Docker engine answers: said, not fatal."""
FAILURES = (BuildError, BaseImageError, NodeImageError)


@dataclass(frozen=True)
class _Step:
    key: str
    title: str
    run: Callable[[], None]


def prepare(tiers: tuple[str, ...] = TIERS, repo_root: Path | None = None) -> int:
    """Provide what *tiers* need, then check it; the exit code (0, or 1 on a gap)."""
    steps = _steps(tiers, repo_root)
    print(f"prepare ({', '.join(tiers)}): {len(steps)} steps", flush=True)
    refused: dict[str, str] = {}
    rows = []
    started = time.monotonic()
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] {step.title} ...", flush=True)
        began = time.monotonic()
        try:
            step.run()
            result = "ready"
        except MACHINE_REFUSALS as error:
            refused[step.key] = str(error)
            result = "not on this machine"
            print(f"[{number}/{len(steps)}] {step.title}: not on this machine: {error}", flush=True)
        except FAILURES as error:
            print(f"prepare: {step.title} failed: {error}", flush=True)
            return 1
        rows.append([step.title, f"{time.monotonic() - began:.1f}", result])
    print(render_table(rows, ["step", "seconds", "result"]), flush=True)
    gaps = 0
    for item in for_tiers(tiers, repo_root):
        if item.present():
            continue
        if item.step in refused:
            print(
                f"prepare: not provided: {item.name} ({refused[item.step]});"
                " the tests that need it skip here and fail in CI",
                flush=True,
            )
        else:
            gaps += 1
            print(f"prepare: missing after its step: {item.name}", flush=True)
    total = time.monotonic() - started
    print(f"prepare: done in {total:.1f}s" + (f", {gaps} missing" if gaps else ""), flush=True)
    return 1 if gaps else 0


def _steps(tiers: tuple[str, ...], repo_root: Path | None) -> list[_Step]:
    steps = []
    if E2E in tiers:
        steps += [
            _Step("debian", "Debian packages of the image and the node",
                  lambda: ensure_installed(DEBIAN_PROGRAMS)),
            _Step("binaries", "control-plane and node binaries",
                  lambda: _build_binaries(repo_root)),
        ]  # fmt: skip
    steps.append(_Step("tools", ", ".join(TOOLS), lambda: _build_tools(repo_root)))
    if E2E in tiers:
        steps.append(
            _Step("images", "images: Debian base, operator, pause", lambda: _images(repo_root))
        )
    return steps


def _build_binaries(repo_root: Path | None) -> None:
    chain = ensure_built(toolchain(repo_root=repo_root), repo_root, node=True)
    print(
        f"  Kubernetes {chain.kube_version}, etcd {chain.etcd_version} in {chain.kube_dir.parent}"
    )


def _build_tools(repo_root: Path | None) -> None:
    for tool in cached_tools(repo_root):
        ensure_tool(tool, repo_root)
        print(f"  {tool.name} {tool.version} in {tool.binary}", flush=True)


def _images(repo_root: Path | None) -> None:
    with DockerEngine() as engine:
        print(f"  base {ensure_base(engine, default_base(repo_root))}", flush=True)
        built = build_operator_image(engine, repo_root=repo_root)
        print(f"  {built.summary()}", flush=True)
        print(f"  pause {build_pause_image(engine, repo_root)}", flush=True)
