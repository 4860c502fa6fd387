"""A Docker engine for kind, on machines that have none: the kind tier's (tests/e2e/test_kind.py).

The harness's own engine (:mod:`harness.engine`) with the differences kind needs:

- its runtime is ``hack/kind/runc_bounded.py``, runc minus the capabilities the machine's
  root lacks: kind runs its nodes ``--privileged``, which asks for all of them, and runc
  refuses where one is missing (this project's CI machine has no CAP_SYS_RESOURCE);
- its data root is ``~/.cache/session-lease-operator/kind/docker``, kept apart from the
  operator image's engine, so node images (1.4 GB each on ``vfs``) stay between runs; while
  another kind engine holds it, this one refuses to start rather than build them again.

Like the harness's engine it has no default bridge and no iptables rules: kind makes a
bridge network of its own (``kind``), the nodes' addresses are reached on it, and the
apiserver through the port kind publishes on 127.0.0.1. kind mounts ``/lib/modules``
into each node; where the machine has no such directory, Docker creates it, and
:meth:`KindEngine.stop` removes it again if it is still empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.binaries import find_repo_root, project_cache
from harness.engine import DockerEngine, EngineError

RUNTIME = Path("hack/kind/runc_bounded.py")
"""The runtime, relative to the repository root."""
MODULES = Path("/lib/modules")


def kind_data_root() -> Path:
    """The kind engine's data root, in the project cache."""
    return project_cache() / "kind" / "docker"


@dataclass
class KindEngine(DockerEngine):
    """``dockerd`` for kind on a socket of its own; one at a time (its data root is locked).
    :attr:`docker_host` is what docker, kind and make are given to use it."""

    run_dir_prefix: ClassVar[str] = "xg2g-kind-docker-"

    _made_modules: bool = field(default=False, init=False)

    def stop(self) -> None:
        """Stop dockerd as the harness's engine stops; remove a /lib/modules it made."""
        super().stop()
        if self._made_modules and MODULES.is_dir() and not any(MODULES.iterdir()):
            MODULES.rmdir()
        self._made_modules = False

    def _claim_data_root(self) -> Path:
        """The kind data root, locked; :class:`EngineError` if another kind engine holds it."""
        root = kind_data_root()
        if not self._lock_data_root(root):
            raise EngineError(f"another kind engine uses {root}")
        # Asked only once the lock is held: no other kind engine's nodes can make it now.
        self._made_modules = not MODULES.exists()
        return root

    def _dockerd_options(self) -> list[str]:
        runtime = find_repo_root() / RUNTIME
        return [f"--add-runtime=bounded={runtime}", "--default-runtime=bounded"]
