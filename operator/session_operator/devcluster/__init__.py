"""A real local Kubernetes control plane for development and tests (``make run``, ``make test``)."""

from session_operator.devcluster.binaries import BuildError, Toolchain, ensure_built, toolchain
from session_operator.devcluster.cluster import (
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
