"""Build and locate the local control plane's binaries and the tools around it.

The binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) are built
from the Go wrapper modules under ``hack/controlplane/`` through the Go module
proxy, once, into a cache outside the repository keyed by version. Later runs
find them there and start in seconds. The tools (helm, kind, prometheus with promtool)
are built the same way from the wrapper modules under ``hack/tools/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kubectl")
NODE_COMPONENTS = ("kube-scheduler", "kubelet", "kube-proxy")
"""What the optional node adds (docs/node.md); built only when a node is asked for."""


class BuildError(RuntimeError):
    """A control-plane binary could not be built."""


@dataclass(frozen=True)
class Toolchain:
    """Paths of the control-plane binaries of one Kubernetes and one etcd version."""

    kube_version: str
    etcd_version: str
    kube_dir: Path
    etcd_dir: Path

    @property
    def etcd(self) -> Path:
        """The etcd server binary."""
        return self.etcd_dir / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        """The kube-apiserver binary."""
        return self.kube_dir / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        """The kube-controller-manager binary."""
        return self.kube_dir / "kube-controller-manager"

    @property
    def kubectl(self) -> Path:
        """The kubectl binary matching the apiserver's version."""
        return self.kube_dir / "kubectl"

    @property
    def kube_scheduler(self) -> Path:
        """The kube-scheduler binary (the node's)."""
        return self.kube_dir / "kube-scheduler"

    @property
    def kubelet(self) -> Path:
        """The kubelet binary (the node's)."""
        return self.kube_dir / "kubelet"

    @property
    def kube_proxy(self) -> Path:
        """The kube-proxy binary (the node's)."""
        return self.kube_dir / "kube-proxy"

    def missing(self, node: bool = False) -> list[Path]:
        """Binaries not yet in the cache; with *node*, the node's too."""
        paths = [self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kubectl]
        if node:
            paths += [self.kube_scheduler, self.kubelet, self.kube_proxy]
        return [path for path in paths if not os.access(path, os.X_OK)]


@dataclass(frozen=True)
class GoTool:
    """One tool built from its wrapper module ``hack/tools/<name>/``, at the pinned version."""

    name: str
    version: str
    directory: Path
    companions: tuple[str, ...] = ()
    """More executables built from the same module into the same directory (promtool)."""

    @property
    def binary(self) -> Path:
        """The tool's executable in the cache."""
        return self.directory / self.name

    @property
    def executables(self) -> tuple[Path, ...]:
        """The tool's executable and its companions'."""
        return (self.binary, *(self.directory / name for name in self.companions))

    def missing(self) -> bool:
        """Whether the tool (or a companion) is not yet in the cache."""
        return not all(os.access(path, os.X_OK) for path in self.executables)


@dataclass(frozen=True)
class _ToolSource:
    module: str
    package: str
    ldflags: Callable[[str, Path], str]
    companions: tuple[tuple[str, str], ...] = ()
    """(name, package) of more executables of the module."""
    tags: str = ""


def _helm_ldflags(version: str, go_mod: Path) -> str:
    # What helm's own Makefile stamps in: its version, and the Kubernetes minor of its
    # client-go, which `helm template` and `helm lint` take as the cluster's version
    # (unstamped, they assume v1.20).
    client_go = pinned_version(go_mod, "k8s.io/client-go")
    match = re.fullmatch(r"v0\.(\d+)\.\d+", client_go)
    if not match:
        raise BuildError(f"{go_mod}: unexpected k8s.io/client-go version {client_go}")
    minor = match.group(1)
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}"]
    flags.append("-X helm.sh/helm/v3/internal/version.gitTreeState=clean")
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {package}.k8sVersionMajor=1", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def _prometheus_ldflags(version: str, _go_mod: Path) -> str:
    # The Go module v0.3MM.P is Prometheus 3.MM.P; `--version` says the latter.
    match = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", version)
    if not match:
        raise BuildError(f"unexpected github.com/prometheus/prometheus version {version}")
    release = f"3.{int(match.group(1))}.{match.group(2)}"
    return f"-s -w -X github.com/prometheus/common/version.Version={release}"


_TOOL_SOURCES = {
    "helm": _ToolSource("helm.sh/helm/v3", "helm.sh/helm/v3/cmd/helm", _helm_ldflags),
    "kind": _ToolSource("sigs.k8s.io/kind", "sigs.k8s.io/kind", lambda _v, _m: "-s -w"),
    # Without the tag builtinassets the web UI (built by npm, not in the module) is left
    # out; the API the tests use is all there. remove_all_sd leaves out every service
    # discovery but static, file and HTTP configurations, and with them the cloud SDKs.
    "prometheus": _ToolSource(
        "github.com/prometheus/prometheus",
        "github.com/prometheus/prometheus/cmd/prometheus",
        _prometheus_ldflags,
        companions=(("promtool", "github.com/prometheus/prometheus/cmd/promtool"),),
        tags="remove_all_sd",
    ),
}
TOOLS = tuple(_TOOL_SOURCES)
"""The tools :func:`go_tool` knows."""


def project_cache() -> Path:
    """The project's cache outside the repository: ``$XDG_CACHE_HOME/session-lease-operator``
    (binaries, images, the Docker engine's data)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "session-lease-operator"


def cache_root() -> Path:
    """The binary cache: ``$XG2G_BIN_CACHE`` or ``$XDG_CACHE_HOME/session-lease-operator/bin``."""
    explicit = os.environ.get("XG2G_BIN_CACHE")
    if explicit:
        return Path(explicit)
    return project_cache() / "bin"


def find_repo_root(start: Path | None = None) -> Path:
    """The checkout holding ``hack/controlplane`` (searched upwards from *start* or cwd)."""
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for origin in candidates:
        for directory in [origin, *origin.parents]:
            if (directory / "hack" / "controlplane" / "kubernetes" / "go.mod").is_file():
                return directory
    raise BuildError(
        "cannot find hack/controlplane/: run from a checkout of session-lease-operator"
    )


def pinned_version(go_mod: Path, module: str) -> str:
    """The version a wrapper's go.mod requires for *module*."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def toolchain(kube_version: str | None = None, repo_root: Path | None = None) -> Toolchain:
    """The toolchain for *kube_version* (default: the version pinned in the wrapper's go.mod)."""
    controlplane = find_repo_root(repo_root) / "hack" / "controlplane"
    kube = kube_version or os.environ.get("KUBE_VERSION") or ""
    kube = kube or pinned_version(controlplane / "kubernetes" / "go.mod", "k8s.io/kubernetes")
    etcd = pinned_version(controlplane / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")
    root = cache_root()
    return Toolchain(kube, etcd, root / kube, root / f"etcd-{etcd}")


def ensure_built(chain: Toolchain, repo_root: Path | None = None, node: bool = False) -> Toolchain:
    """Build whatever binaries of *chain* are missing (with *node*, kube-scheduler and
    kubelet too), printing progress; return *chain*."""
    if not chain.missing(node):
        return chain
    if shutil.which("go") is None:
        raise BuildError(
            "the Go toolchain is needed to build the local control plane (go not on PATH)"
        )
    controlplane = find_repo_root(repo_root) / "hack" / "controlplane"
    if not os.access(chain.etcd, os.X_OK):
        _build_module(controlplane / "etcd", {"etcd": "."}, chain.etcd_dir, ldflags="-s -w")
    wanted = (*KUBE_COMPONENTS, *NODE_COMPONENTS) if node else KUBE_COMPONENTS
    kube_missing = [name for name in wanted if not os.access(chain.kube_dir / name, os.X_OK)]
    if kube_missing:
        with _KubeModuleAt(controlplane / "kubernetes", chain.kube_version) as module:
            _build_module(
                module,
                {name: f"./{name}" for name in kube_missing},
                chain.kube_dir,
                ldflags=_version_ldflags(chain.kube_version),
            )
    return chain


def go_tool(name: str, repo_root: Path | None = None) -> GoTool:
    """The tool *name* (one of :data:`TOOLS`) at the version its wrapper module pins."""
    source = _TOOL_SOURCES.get(name)
    if source is None:
        raise BuildError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    go_mod = _tool_module(name, repo_root) / "go.mod"
    version = pinned_version(go_mod, source.module)
    companions = tuple(companion for companion, _ in source.companions)
    return GoTool(name, version, cache_root() / f"{name}-{version}", companions)


def ensure_tool(tool: GoTool, repo_root: Path | None = None) -> GoTool:
    """Build *tool* unless it is in the cache, printing progress; return *tool*."""
    if not tool.missing():
        return tool
    if shutil.which("go") is None:
        raise BuildError(f"the Go toolchain is needed to build {tool.name} (go not on PATH)")
    module = _tool_module(tool.name, repo_root)
    source = _TOOL_SOURCES[tool.name]
    ldflags = source.ldflags(tool.version, module / "go.mod")
    targets = {tool.name: source.package, **dict(source.companions)}
    missing = {
        name: package
        for name, package in targets.items()
        if not os.access(tool.directory / name, os.X_OK)
    }
    _build_module(module, missing, tool.directory, ldflags=ldflags, tags=source.tags)
    return tool


def _tool_module(name: str, repo_root: Path | None) -> Path:
    return find_repo_root(repo_root) / "hack" / "tools" / name


def _version_ldflags(kube_version: str) -> str:
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", kube_version)
    if not match:
        raise BuildError(f"KUBE_VERSION must look like v1.37.2, not {kube_version!r}")
    major, minor = match.groups()
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={kube_version} -X {pkg}.gitMajor={major}"
        f" -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
    )


class _KubeModuleAt:
    """Context manager yielding the wrapper module, re-pinned in a scratch copy if needed."""

    def __init__(self, module: Path, kube_version: str) -> None:
        self._module = module
        self._version = kube_version
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        go_mod = self._module / "go.mod"
        if pinned_version(go_mod, "k8s.io/kubernetes") == self._version:
            return self._module
        self._scratch = tempfile.TemporaryDirectory(prefix="controlplane-")
        copy = Path(self._scratch.name) / "kubernetes"
        shutil.copytree(self._module, copy)
        staging = "v0." + self._version.removeprefix("v1.")
        text = re.sub(r"(k8s\.io/kubernetes\s+)v\S+", rf"\g<1>{self._version}", go_mod.read_text())
        text = re.sub(r"(=>\s+k8s\.io/\S+\s+)v\S+", rf"\g<1>{staging}", text)
        (copy / "go.mod").write_text(text)
        print(f"re-pinning the wrapper module to {self._version} (staging {staging})", flush=True)
        _run_go(["go", "mod", "tidy"], copy)
        return copy

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()


def _run_go(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed in {cwd}:\n{result.stderr[-4000:]}")


def _build_module(
    module: Path, targets: dict[str, str], out_dir: Path, ldflags: str, tags: str = ""
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, package in targets.items():
        started = time.monotonic()
        print(f"building {name} into {out_dir} (first time only; takes minutes)", flush=True)
        _run_go(["go", "mod", "download"], module)
        total = _count_deps(module, package, tags)
        partial = out_dir / f".{name}.partial"
        flags = ["-v", "-trimpath", *(["-tags", tags] if tags else []), "-ldflags", ldflags]
        argv = ["go", "build", *flags, "-o", str(partial), package]
        process = subprocess.Popen(
            argv, cwd=module, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None
        step = 25 if sys.stdout.isatty() else 250
        tail: list[str] = []
        for compiled, line in enumerate(process.stderr, start=1):
            tail = [*tail[-40:], line]
            if compiled % step == 0:
                _progress(name, compiled, total, started)
        if process.wait() != 0:
            raise BuildError(f"go build of {name} failed:\n{''.join(tail)}")
        partial.rename(out_dir / name)
        _progress(name, total, total, started)
        print(flush=True)


def _count_deps(module: Path, package: str, tags: str = "") -> int:
    argv = ["go", "list", "-deps", *(["-tags", tags] if tags else []), package]
    result = subprocess.run(argv, cwd=module, capture_output=True, text=True, check=False)
    return max(1, len(result.stdout.splitlines()))


def _progress(name: str, done: int, total: int, started: float) -> None:
    done = min(done, total)
    width = 30
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    elapsed = time.monotonic() - started
    end = "\r" if sys.stdout.isatty() else "\n"
    print(f"  {name:<24} [{bar}] {done:>5}/{total} packages {elapsed:6.0f}s", end=end, flush=True)
