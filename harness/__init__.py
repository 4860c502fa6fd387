"""A real local Kubernetes control plane for development and tests (``make run``, ``make test``)."""

from harness.binaries import BuildError, Toolchain, ensure_built, toolchain
from harness.cluster import (
    ControlPlaneError,
    Kubectl,
    KubectlError,
    LocalControlPlane,
)

__all__ = [
    "BuildError",
    "ControlPlaneError",
    "Kubectl",
    "KubectlError",
    "LocalControlPlane",
    "Toolchain",
    "ensure_built",
    "toolchain",
]
