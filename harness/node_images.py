"""The images the node runs, made here and loaded into its containerd.

The pause image (the Pod sandbox) is ``hack/node/pause.c`` built with ``gcc -static``
and ``docker import``-ed; the operator image is ``make image``'s. Both leave the
harness's Docker engine as one ``docker save`` archive, which ``ctr images import``
loads into the node's containerd (namespace ``k8s.io``, the CRI's).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

from harness.binaries import find_repo_root
from harness.debian_packages import SYSTEM_PATH, Program
from harness.engine import DockerEngine
from harness.node_config import PAUSE_IMAGE

GCC = Program("gcc", "gcc")
CTR = Program("ctr", "containerd")


class NodeImageError(RuntimeError):
    """An image for the node could not be made or loaded."""


def build_pause_image(engine: DockerEngine, repo_root: Path | None = None) -> str:
    """Build :data:`PAUSE_IMAGE` in *engine* (a second or two); return its name."""
    source = find_repo_root(repo_root) / "hack" / "node" / "pause.c"
    with tempfile.TemporaryDirectory(prefix="xg2g-pause-") as scratch:
        binary = Path(scratch) / "pause"
        compiled = subprocess.run(
            [str(GCC.path()), "-static", "-Os", "-o", str(binary), str(source)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PATH": SYSTEM_PATH},  # gcc runs `as` and `ld` by name
        )
        if compiled.returncode != 0:
            raise NodeImageError(f"gcc -static of {source} failed: {compiled.stderr.strip()}")
        root = Path(scratch) / "rootfs.tar"
        with tarfile.open(root, "w") as archive:
            archive.add(binary, arcname="pause")
        engine.docker("import", "--change", 'ENTRYPOINT ["/pause"]', str(root), PAUSE_IMAGE)
    return PAUSE_IMAGE


def save_images(engine: DockerEngine, images: list[str], archive: Path) -> Path:
    """Write *images* from *engine* into one ``docker save`` *archive*."""
    engine.docker("save", f"--output={archive}", *images)
    return archive


def import_images(containerd_socket: Path, archive: Path) -> None:
    """Load *archive* into the containerd at *containerd_socket*, unpacked for the CRI's
    native snapshotter."""
    argv = [
        str(CTR.path()), f"--address={containerd_socket}", "--namespace=k8s.io",
        "images", "import", "--snapshotter=native", str(archive),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        raise NodeImageError(f"ctr images import failed: {result.stderr.strip()}")
