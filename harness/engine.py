"""A Docker engine of the harness's own, started and stopped like etcd.

``dockerd`` (Debian's ``docker.io``) with the ``vfs`` storage driver, its own socket,
exec root, pidfile and configuration in a temporary directory, and no network of its own:
no bridge, no iptables rules, no masquerading, so containers run with ``--network host``
(loopback) or none. The machine's default socket and its ``daemon.json`` are never used.

The data root (images, build cache) is kept in the project cache, so a second run finds
the images of the first. Only one engine uses it at a time; an engine started while
another holds it gets a temporary data root, removed when it stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar

from harness.binaries import project_cache
from harness.debian_packages import DOCKER, DOCKERD, SYSTEM_PATH
from harness.processes import (
    exit_on_sigterm,
    log_excerpt,
    spawn,
    terminate,
    unmount_under,
)

# Old build cache goes first once it passes this size (dockerd's BuildKit garbage collector).
BUILD_CACHE_KEEP = "4GB"
# dockerd stops its containers (10 s each by default) and containerd before it exits.
STOP_GRACE_SECONDS = 30.0


class EngineError(RuntimeError):
    """The engine could not be started, or a docker command failed."""


def shared_data_root() -> Path:
    """The data root kept between runs, in the project cache."""
    return project_cache() / "docker"


@dataclass
class DockerEngine:
    """``dockerd`` on a socket of its own. Use it as a context manager, or call
    :meth:`start` and :meth:`stop`; :meth:`docker` runs the client against it."""

    # What an engine for another purpose changes (harness.kind_engine): this prefix,
    # :meth:`_claim_data_root` and :meth:`_dockerd_options`.
    run_dir_prefix: ClassVar[str] = "xg2g-docker-"

    startup_timeout: float = 60.0
    data_root: Path = field(init=False)
    _run_dir: Path | None = field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _lock: IO[bytes] | None = field(default=None, init=False)

    def __enter__(self) -> DockerEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def run_dir(self) -> Path:
        """Socket, exec root, pidfile, configuration and log: a temporary directory."""
        assert self._run_dir is not None, "the engine is not started"
        return self._run_dir

    @property
    def socket(self) -> Path:
        """The engine's API socket."""
        return self.run_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        """The engine's address, as DOCKER_HOST (for docker, kind and make) takes it."""
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        """dockerd's log (containerd's lines included)."""
        return self.run_dir / "dockerd.log"

    def start(self) -> None:
        """Start dockerd and wait until it answers; :class:`EngineError` if it cannot."""
        if os.geteuid() != 0:
            raise EngineError("dockerd needs root here (the rootless setup is not made)")
        dockerd = DOCKERD.find()
        if dockerd is None or DOCKER.find() is None:
            raise EngineError(
                "the Docker engine is not installed (Debian package docker.io):"
                " `make engine` installs it as root"
            )
        exit_on_sigterm()
        self._run_dir = Path(tempfile.mkdtemp(prefix=self.run_dir_prefix))
        try:
            self.data_root = self._claim_data_root()
            config = self.run_dir / "daemon.json"
            builder = {"gc": {"enabled": True, "defaultKeepStorage": BUILD_CACHE_KEEP}}
            config.write_text(json.dumps({"builder": builder}))
            argv = [
                str(dockerd),
                f"--config-file={config}",
                "--storage-driver=vfs",
                f"--data-root={self.data_root}",
                f"--exec-root={self.run_dir / 'exec'}",
                f"--pidfile={self.run_dir / 'dockerd.pid'}",
                f"--host={self.docker_host}",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                *self._dockerd_options(),
            ]
            with self.log_path.open("wb") as log:
                # dockerd finds containerd and runc on its PATH.
                self._process = spawn(argv, log, env={**os.environ, "PATH": SYSTEM_PATH})
            self._wait_until_answering()
            # Containers of an engine that was killed: no one will start them again.
            self.docker("container", "prune", "--force")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop dockerd (it stops its containers first), undo the mounts it left (its
        network namespace; more if it had to be killed) and remove the temporary directory."""
        if self._run_dir is None:
            return
        terminate(self._process, grace=STOP_GRACE_SECONDS)
        self._process = None
        unmount_under(self._run_dir)
        if self._lock is not None:
            unmount_under(self.data_root)
            self._lock.close()
            self._lock = None
        shutil.rmtree(self._run_dir, ignore_errors=True)
        self._run_dir = None

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine, output captured; :class:`EngineError` on a
        non-zero exit when *check*."""
        result = subprocess.run(
            self._client_argv(args),
            env=self._client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def docker_shown(self, *args: str) -> None:
        """``docker ARGS`` with its output on this process's own (a build's progress)."""
        result = subprocess.run(self._client_argv(args), env=self._client_env(), check=False)
        if result.returncode != 0:
            raise EngineError(f"docker {args[0]} failed with exit code {result.returncode}")

    def image_id(self, reference: str) -> str | None:
        """The id of the image *reference* in this engine, None if it has none."""
        found = self.docker("image", "inspect", "--format={{.Id}}", reference, check=False)
        return found.stdout.strip() if found.returncode == 0 else None

    def _client_argv(self, args: tuple[str, ...]) -> list[str]:
        return [str(DOCKER.path()), f"--host={self.docker_host}", *args]

    def _client_env(self) -> dict[str, str]:
        # Nothing of the caller's Docker setup: no DOCKER_HOST, no ~/.docker configuration.
        env = {key: value for key, value in os.environ.items() if not key.startswith("DOCKER_")}
        env.update(
            PATH=SYSTEM_PATH, DOCKER_CONFIG=str(self.run_dir / "client"), DOCKER_BUILDKIT="1"
        )
        return env

    def _claim_data_root(self) -> Path:
        """The data root to start dockerd on: the shared one if no other engine holds it,
        else a temporary one (removed with the run directory)."""
        shared = shared_data_root()
        if self._lock_data_root(shared):
            return shared
        print(f"another engine uses {shared}; this one gets a temporary data root", flush=True)
        return self.run_dir / "data"

    def _dockerd_options(self) -> list[str]:
        """dockerd options besides those every engine here runs with; none for this one."""
        return []

    def _lock_data_root(self, root: Path) -> bool:
        """Make *root* if missing and take the lock beside it, held until :meth:`stop`;
        False if another engine holds it."""
        root.mkdir(parents=True, exist_ok=True)
        lock = (root.parent / "docker.lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._lock = lock
        return True

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineError(
                    f"dockerd exited with code {self._process.returncode} during start\n"
                    f"{log_excerpt(self.log_path)}"
                )
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise EngineError(
            f"dockerd not answering after {self.startup_timeout:.0f}s\n{log_excerpt(self.log_path)}"
        )
