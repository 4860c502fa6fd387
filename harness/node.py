"""An optional node for the local control plane: kube-scheduler, containerd, a kubelet,
and a Pod network, all on this machine and torn down without a trace.

The node lives in a network namespace the harness makes (:mod:`harness.netns`): containerd,
its CNI bridge and Pods, and the kubelet are inside it; kube-scheduler stays with the
control plane on the machine's loopback. :mod:`harness.loopback_bridge` carries the
kubelet's and the Pods' connections to the apiserver, and one DNAT rule inside the node's
namespace sends the ``kubernetes`` Service's ClusterIP there (docs/node.md).

:meth:`LocalNode.stop` stops the kubelet, containerd and the rest, unmounts whatever they
mounted, removes the Pods' network namespaces and the node's own (its bridge goes with it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.binaries import Toolchain, find_repo_root
from harness.cluster import LocalControlPlane, free_port
from harness.debian_packages import SYSTEM_PATH, Program
from harness.kernel_settings import (
    record_kernel_settings,
    restore_kernel_settings,
    restore_recorded_kernel_settings,
)
from harness.netns import (
    IP,
    NetworkNamespace,
    enter_network_namespace,
    pinned_namespaces,
    remove_pinned,
)
from harness.node_config import (
    BRIDGE,
    CNI_BIN_DIR,
    NODE_NAME,
    POD_GATEWAY,
    POD_SUBNET,
    RUNC,
    NodeLayout,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)
from harness.node_images import CTR, GCC, import_images
from harness.processes import (
    log_excerpt,
    own_start_time,
    process_start_time,
    remove_unmounted_tree,
    spawn,
    terminate,
    unmount_under,
)

CONTAINERD = Program("containerd", "containerd")
IPTABLES = Program("iptables", "iptables")
KUBERNETES_SERVICE_IP = "10.96.0.1"
"""The ``kubernetes`` Service's ClusterIP (the first of the apiserver's service range)."""
APISERVER_BRIDGE_PORT = 6443
"""Where, on the bridge's address, the Pods reach the apiserver."""
NAMESPACE_PREFIX = "xg2g-node-"
"""Node namespaces are named after the harness process that made them: its PID and start
time (``xg2g-node-<pid>-<start>``), so that a reused PID does not keep them."""
NODE_RECORDS = Path("/run/xg2g-node")
"""Where a node keeps the kernel settings it found, for the next node's start should its
harness be killed outright (a tmpfs: a reboot resets both)."""
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "k8s.io"
"""The cgroup containerd's CRI gives Pods when the kubelet names none."""
CNI_BRIDGE = Program("bridge", "containernetworking-plugins", search_path=str(CNI_BIN_DIR))
NODE_PROGRAMS = (CONTAINERD, Program("runc", "runc"), IPTABLES, CNI_BRIDGE, CTR, IP, GCC)
"""What the node needs from the machine (Debian packages, installed when missing): its
daemons, the Pod network's tools, and gcc for the pause image."""


class NodeError(RuntimeError):
    """The node could not be started, or the machine cannot host one."""


def node_unavailable_reason(chain: Toolchain) -> str | None:
    """Why this machine cannot host the node, in one line; None when it can."""
    if os.geteuid() != 0:
        return "the node needs root (network namespaces, mounts, containerd)"
    missing = [
        f"{program.name} (Debian package {program.package})"
        for program in NODE_PROGRAMS
        if program.find() is None
    ]
    if not RUNC.exists():
        missing.append(f"{RUNC} (Debian package runc)")
    if missing:
        return "missing: " + ", ".join(missing)
    if chain.missing(node=True):
        return f"binaries not built: {[str(path) for path in chain.missing(node=True)]}"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup"
    return None


@dataclass
class _Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class LocalNode:
    """One node beside *control_plane*. Use it as a context manager, or call :meth:`start`
    and :meth:`stop`; *images* is a ``docker save`` archive loaded before Pods run."""

    control_plane: LocalControlPlane
    images: Path | None = None
    startup_timeout: float = 120.0
    namespace: NetworkNamespace = field(init=False)
    layout: NodeLayout = field(init=False)
    _daemons: list[_Daemon] = field(default_factory=list, init=False)
    _kernel_settings: dict[str, str] = field(default_factory=dict, init=False)
    _cgroups: set[Path] = field(default_factory=set, init=False)
    started_seconds: float = field(default=0.0, init=False)

    def __enter__(self) -> LocalNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def name(self) -> str:
        """The Node object's name."""
        return NODE_NAME

    def start(self) -> None:
        """Start the node and wait until its Node is Ready; :class:`NodeError` if not."""
        started = time.monotonic()
        workdir = self.control_plane.workdir
        assert workdir is not None, "start the control plane first"
        remove_stale_nodes()
        self.namespace = NetworkNamespace(node_namespace_name(os.getpid(), own_start_time()))
        ports = [free_port() for _ in range(4)]
        self.layout = NodeLayout(workdir / "node", *ports)
        self._kernel_settings = record_kernel_settings(kernel_record(self.namespace.name))
        self._cgroups = k8s_io_cgroups()
        try:
            self._write_files()
            self._make_network()
            self._start_bridge()
            self._start_containerd()
            if self.images is not None:
                import_images(self.layout.containerd_socket, self.images)
            self._start_scheduler()
            self._start_kubelet()
            self._start_proxy()
            self._wait_for("Node Ready", self._node_ready)
            # The kubelet registers the Node tainted not-ready; the node lifecycle
            # controller that would lift the taint is not run (it would evict on any lag).
            self.control_plane.kubectl(
                "taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-", check=False
            )
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop every daemon (kubelet first), then undo what they made: the kernel settings
        the kubelet changed, mounts under the node's directory, the Pods' network
        namespaces, the node's namespace and bridge, the cgroups the Pods needed."""
        if not hasattr(self, "layout"):
            return
        # The Pods' namespaces are those at the far end of the bridge's veths (another
        # node's, or the machine's own, are left alone).
        pod_namespaces = self.namespace.peer_namespaces()
        for daemon in reversed(self._daemons):
            if daemon.name == "containerd" and daemon.process.poll() is None:
                remove_containers(self.layout.containerd_socket)
            terminate(daemon.process, grace=15.0)
        self._daemons.clear()
        restore_kernel_settings(self._kernel_settings)
        kernel_record(self.namespace.name).unlink(missing_ok=True)
        kill_shims_of(self.layout.containerd_socket)
        _remove_log_links(self.layout.pod_logs_dir)
        remove_cgroups_made_since(self._cgroups)
        unmount_under(self.layout.workdir)
        for name in pod_namespaces:
            remove_pinned(name)
        self.namespace.delete()
        remove_unmounted_tree(self.layout.workdir)

    # -- the parts ----------------------------------------------------------------

    def _write_files(self) -> None:
        layout = self.layout
        layout.cni_conf_dir.mkdir(parents=True)
        layout.kubelet_dir.mkdir(parents=True)
        layout.containerd_config.parent.mkdir(parents=True)
        layout.containerd_config.write_text(containerd_config(layout))
        (layout.cni_conf_dir / "10-xg2g-pods.conflist").write_text(cni_conflist(layout))
        layout.kubelet_config.write_text(kubelet_config(layout))
        layout.resolv_conf.write_text("")
        shutil.copyfile(self.control_plane.kubeconfig, layout.kubeconfig)
        layout.proxy_config.write_text(kube_proxy_config(layout))

    def _make_network(self) -> None:
        """The namespace, its bridge with the Pods' gateway address (the loopback bridge
        listens there), and the ``kubernetes`` ClusterIP sent to that listener."""
        ns = self.namespace
        ns.create()
        prefix = POD_SUBNET.split("/")[1]
        ns.ip("-n", ns.name, "link", "add", BRIDGE, "type", "bridge")
        ns.ip("-n", ns.name, "addr", "add", f"{POD_GATEWAY}/{prefix}", "dev", BRIDGE)
        ns.ip("-n", ns.name, "link", "set", BRIDGE, "up")
        rule = [
            "-t", "nat", "-A", "PREROUTING", "-d", KUBERNETES_SERVICE_IP, "-p", "tcp",
            "--dport", "443", "-j", "DNAT", "--to-destination",
            f"{POD_GATEWAY}:{APISERVER_BRIDGE_PORT}",
        ]  # fmt: skip
        self._in_namespace([str(IPTABLES.path()), *rule])

    def _start_bridge(self) -> None:
        port = self.control_plane.server.rsplit(":", 1)[1]
        argv = [
            sys.executable, "-m", "harness.loopback_bridge", str(self.namespace.path), port,
            f"127.0.0.1:{port}", f"{POD_GATEWAY}:{APISERVER_BRIDGE_PORT}",
        ]  # fmt: skip
        # The harness is imported from the checkout, wherever this process runs.
        daemon = self._spawn(
            "loopback-bridge", argv, in_namespace=False, pythonpath=str(find_repo_root())
        )
        self._wait_for("loopback bridge", lambda: "listening" in _read(daemon.log_path), daemon)

    def _start_containerd(self) -> None:
        argv = [str(CONTAINERD.path()), f"--config={self.layout.containerd_config}"]
        daemon = self._spawn("containerd", argv)
        self._wait_for("containerd", self.layout.containerd_socket.exists, daemon)

    def _start_scheduler(self) -> None:
        kubeconfig = str(self.control_plane.kubeconfig)
        argv = [
            str(self.control_plane.toolchain.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ]
        self._spawn("kube-scheduler", argv, in_namespace=False)

    def _start_kubelet(self) -> None:
        layout = self.layout
        argv = [
            str(self.control_plane.toolchain.kubelet),
            f"--config={layout.kubelet_config}",
            f"--kubeconfig={layout.kubeconfig}",
            f"--root-dir={layout.kubelet_dir}",
            f"--cert-dir={layout.kubelet_dir / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            "--node-ip=127.0.0.1",
        ]
        self._spawn("kubelet", argv)

    def _start_proxy(self) -> None:
        argv = [
            str(self.control_plane.toolchain.kube_proxy),
            f"--config={self.layout.proxy_config}",
        ]
        self._spawn("kube-proxy", argv)

    # -- helpers ------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], in_namespace: bool = True, pythonpath: str = ""
    ) -> _Daemon:
        log_path = self.layout.workdir / f"{name}.log"
        enter = partial(enter_network_namespace, self.namespace.path) if in_namespace else None
        env = {**os.environ, "PATH": SYSTEM_PATH}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        with log_path.open("wb") as log:
            process = spawn(argv, log, env=env, before_exec=enter)
        daemon = _Daemon(name, process, log_path)
        self._daemons.append(daemon)
        return daemon

    def _in_namespace(self, argv: list[str]) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=partial(enter_network_namespace, self.namespace.path),
        )
        if result.returncode != 0:
            raise NodeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def _wait_for(
        self, what: str, ready: Callable[[], bool], daemon: _Daemon | None = None
    ) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for running in [daemon] if daemon else self._daemons:
                if running.process.poll() is not None:
                    raise NodeError(
                        f"{running.name} exited with code {running.process.returncode}"
                        f" while waiting for {what}\n{log_excerpt(running.log_path)}"
                    )
            if ready():
                return
            time.sleep(0.2)
        logs = "\n".join(log_excerpt(running.log_path) for running in self._daemons)
        raise NodeError(f"{what}: not after {self.startup_timeout:.0f}s\n{logs}")

    def _node_ready(self) -> bool:
        found = self.control_plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def remove_stale_nodes() -> None:
    """Undo what the nodes of harness processes that died without stopping them (SIGKILL)
    left: their namespaces and bridges (their daemons died with them), and the kernel
    settings their kubelets changed."""
    recorded = {record.name.removesuffix(".json") for record in NODE_RECORDS.glob("*.json")}
    for name in pinned_namespaces() | recorded:
        if made_by_a_dead_process(name):
            NetworkNamespace(name).delete()
            restore_recorded_kernel_settings(kernel_record(name))


def node_namespace_name(pid: int, start_time: int) -> str:
    """The name of the node namespace of the harness process *pid* started at *start_time*."""
    return f"{NAMESPACE_PREFIX}{pid}-{start_time}"


def made_by_a_dead_process(name: str) -> bool:
    """Whether *name* is a node namespace whose harness process is gone: no process has its
    PID, or the one that has it started at another time. Any other name is not judged."""
    pid, _, start_time = name.removeprefix(NAMESPACE_PREFIX).partition("-")
    if not (name.startswith(NAMESPACE_PREFIX) and pid.isdigit() and start_time.isdigit()):
        return False
    return process_start_time(int(pid)) != int(start_time)


def kernel_record(namespace_name: str) -> Path:
    """Where the node of namespace *namespace_name* keeps the kernel settings it found."""
    return NODE_RECORDS / f"{namespace_name}.json"


def remove_containers(containerd_socket: Path) -> None:
    """Kill and delete every task and container of the CRI's namespace (runc removes
    their cgroups and state), so nothing outlives the node."""
    ctr = [str(CTR.path()), f"--address={containerd_socket}", "--namespace=k8s.io"]
    listed = subprocess.run(
        [*ctr, "containers", "list", "--quiet"], capture_output=True, text=True, check=False
    )
    for container in listed.stdout.split():
        subprocess.run(
            [*ctr, "tasks", "delete", "--force", container], capture_output=True, check=False
        )
        subprocess.run([*ctr, "containers", "delete", container], capture_output=True, check=False)


def kill_shims_of(containerd_socket: Path) -> None:
    """SIGKILL the containerd shims serving *containerd_socket*, and every process below
    them (a containerd killed outright leaves them running, holding the node's mounts)."""
    parents: dict[int, int] = {}
    shims: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if cmdline[0].endswith(b"containerd-shim-runc-v2") and str(
            containerd_socket
        ).encode() in b" ".join(cmdline):
            shims.append(int(entry.name))
    doomed = set(shims)
    while grown := {pid for pid, parent in parents.items() if parent in doomed} - doomed:
        doomed |= grown
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _remove_log_links(pod_logs_dir: Path) -> None:
    """The kubelet links each container's log into /var/log/containers (a fixed place);
    the links into this node's log directory go."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        if link.is_symlink() and str(pod_logs_dir) in os.readlink(link):
            link.unlink(missing_ok=True)


def k8s_io_cgroups(root: Path = CGROUP_ROOT) -> set[Path]:
    """The ``k8s.io`` cgroups there are now, and every cgroup below them: the CRI puts each
    container in a cgroup of its own under a ``k8s.io`` in each cgroup v1 hierarchy, or
    under the v2 one (the kubelet makes no QoS cgroups here)."""
    found = {*root.glob(CGROUP_PARENT), *root.glob(f"*/{CGROUP_PARENT}")}
    for parent in list(found):
        for directory, below, _files in os.walk(parent):
            found.update(Path(directory) / name for name in below)
    return found


def remove_cgroups_made_since(
    before: set[Path], root: Path = CGROUP_ROOT, wait_seconds: float = 5.0
) -> None:
    """Remove each of those cgroups that was not there *before* (the node made it: its
    containers', and a ``k8s.io`` above them), deepest first. rmdir refuses a cgroup still
    in use, so the processes of the shims just killed get up to *wait_seconds* to leave;
    one in use after that stays, as do the machine's own and those there before."""
    deadline = time.monotonic() + wait_seconds
    while True:
        made = sorted(k8s_io_cgroups(root) - before, key=lambda path: len(path.parts))
        left = [cgroup for cgroup in reversed(made) if not _removed(cgroup)]
        if not left or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def _removed(cgroup: Path) -> bool:
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
