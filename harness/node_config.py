"""The node's configuration files, rendered from a :class:`NodeLayout` (pure, no I/O).

containerd (CRI), the kubelet and the CNI network each get one file; what they say, and
why, is in docs/node.md. Every path is under the node's own working directory, so two
nodes (or a node and the machine's own containerd) never share a socket or a root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

NODE_NAME = "xg2g-node"
POD_SUBNET = "10.88.0.0/24"
POD_GATEWAY = "10.88.0.1"
"""The bridge's address inside the node's network namespace: the Pods' default route."""
BRIDGE = "xg2g0"
PAUSE_IMAGE = "xg2g.local/pause:3.10"
CNI_BIN_DIR = Path("/usr/lib/cni")
"""Debian's containernetworking-plugins."""
RUNC = Path("/usr/sbin/runc")
"""Debian's runc (built with seccomp, which the CRI's default profile needs)."""


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its files, and the ports its kubelet listens on."""

    workdir: Path
    kubelet_port: int
    kubelet_healthz_port: int
    proxy_healthz_port: int
    proxy_metrics_port: int

    @property
    def containerd_socket(self) -> Path:
        """containerd's gRPC socket (the kubelet's container runtime endpoint)."""
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        """containerd's configuration file."""
        return self.workdir / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        """Where the CRI plugin reads the network's conflist."""
        return self.workdir / "cni" / "net.d"

    @property
    def kubelet_dir(self) -> Path:
        """The kubelet's root directory (volumes, Pod directories, its certificate)."""
        return self.workdir / "kubelet"

    @property
    def pod_logs_dir(self) -> Path:
        """Where the kubelet keeps the containers' logs (not /var/log/pods)."""
        return self.workdir / "pod-logs"

    @property
    def kubelet_config(self) -> Path:
        """The KubeletConfiguration file."""
        return self.workdir / "kubelet-config.yaml"

    @property
    def kubeconfig(self) -> Path:
        """The kubelet's and kube-proxy's kubeconfig (the apiserver through the loopback
        bridge, on the namespace's own loopback)."""
        return self.workdir / "kubeconfig"

    @property
    def proxy_config(self) -> Path:
        """The KubeProxyConfiguration file."""
        return self.workdir / "kube-proxy-config.yaml"

    @property
    def resolv_conf(self) -> Path:
        """The resolv.conf every Pod gets: no name server (docs/node.md, DNS)."""
        return self.workdir / "resolv.conf"


def containerd_config(layout: NodeLayout) -> str:
    """containerd's config.toml: its own root, state and socket; the native snapshotter;
    runc without systemd cgroups; OOM score changes the machine allows (without
    ``restrict_oom_score_adj`` every sandbox fails here: no CAP_SYS_RESOURCE)."""
    base = layout.workdir / "containerd"
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    lines = [
        "version = 2",
        f'root = "{base / "root"}"',
        f'state = "{base / "state"}"',
        "[grpc]",
        f'  address = "{layout.containerd_socket}"',
        "[ttrpc]",
        f'  address = "{base / "ttrpc.sock"}"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{base / "opt"}"',
        cri,
        f'  sandbox_image = "{PAUSE_IMAGE}"',
        "  restrict_oom_score_adj = true",
        '  stream_server_address = "127.0.0.1"',
        f"{cri[:-1]}.containerd]",
        '  snapshotter = "native"',
        '  default_runtime_name = "runc"',
        runc,
        '  runtime_type = "io.containerd.runc.v2"',
        f"{runc[:-1]}.options]",
        f'  BinaryName = "{RUNC}"',
        f'  Root = "{base / "runc"}"',
        "  SystemdCgroup = false",
        f"{cri[:-1]}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{layout.cni_conf_dir}"',
    ]
    return "\n".join(lines) + "\n"


def cni_conflist(layout: NodeLayout) -> str:
    """The Pod network: a bridge in the node's network namespace, addresses from
    host-local (its records under the node's directory), no masquerading (nothing leaves
    the namespace), and portmap for hostPorts."""
    bridge = {
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(layout.workdir / "cni" / "ipam"),
        },
    }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    document = {"cniVersion": "1.0.0", "name": "xg2g-pods", "plugins": [bridge, portmap]}
    return json.dumps(document, indent=2) + "\n"


def kubelet_config(layout: NodeLayout) -> str:
    """The KubeletConfiguration this machine accepts: cgroup v1 allowed, cgroupfs, no
    QoS cgroups or node allocatable enforcement, swap and local-storage checks off; no
    eviction (a full disk elsewhere must not evict the tests' Pods); the kubelet's API on
    loopback of the node's namespace, with no anonymous access."""
    document = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "localStorageCapacityIsolation": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": "127.0.0.1",
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.kubelet_healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "resolvConf": str(layout.resolv_conf),
        "podLogsDir": str(layout.pod_logs_dir),
        "podCIDR": POD_SUBNET,
        "serializeImagePulls": False,
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
    }
    return yaml.safe_dump(document, sort_keys=False)


def kube_proxy_config(layout: NodeLayout) -> str:
    """The KubeProxyConfiguration: iptables rules in the node's namespace, every Service
    connection masqueraded to the bridge's address (so a Pod reaching a Pod on the same
    bridge through a ClusterIP gets its answer back through the rules, with no
    bridge netfilter), conntrack limits left as the machine has them, its own ports on
    loopback."""
    document = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_SUBNET,
        "healthzBindAddress": f"127.0.0.1:{layout.proxy_healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{layout.proxy_metrics_port}",
        "iptables": {"masqueradeAll": True},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return yaml.safe_dump(document, sort_keys=False)
