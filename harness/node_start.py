"""Start the optional node beside a running control plane, for ``make run NODE=1``.

Everything the node needs is made first: its Debian packages and binaries, then its
images (the pause image, and the operator image when ``make image`` has built it) on the
harness's Docker engine, which is stopped again before the node starts.
"""

from __future__ import annotations

from pathlib import Path

from harness.binaries import ensure_built
from harness.cluster import LocalControlPlane
from harness.debian_packages import ensure_installed
from harness.engine import DockerEngine
from harness.image import OPERATOR_IMAGE
from harness.node import NODE_PROGRAMS, LocalNode, NodeError, node_unavailable_reason
from harness.node_images import build_pause_image, save_images


def prepare_node(control_plane: LocalControlPlane) -> LocalNode:
    """A :class:`LocalNode` for *control_plane*, its packages, binaries and images ready
    (not started); :class:`NodeError` saying why when this machine cannot host one."""
    ensure_installed(NODE_PROGRAMS)
    chain = ensure_built(control_plane.toolchain, node=True)
    reason = node_unavailable_reason(chain)
    if reason:
        raise NodeError(f"this machine cannot host a node: {reason}")
    assert control_plane.workdir is not None
    archive = Path(control_plane.workdir) / "node-images.tar"
    with DockerEngine() as engine:
        images = [build_pause_image(engine)]
        if engine.image_id(OPERATOR_IMAGE):
            images.append(OPERATOR_IMAGE)
        else:
            print(f"no {OPERATOR_IMAGE} yet (`make image` builds it): the node has only pause")
        save_images(engine, images, archive)
    print(f"node images: {', '.join(images)}", flush=True)
    return LocalNode(control_plane, images=archive)
