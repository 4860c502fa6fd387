"""The node's configuration files say what this machine needs, with every path under the
node's own directory."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from harness.node_config import (
    PAUSE_IMAGE,
    POD_GATEWAY,
    POD_SUBNET,
    NodeLayout,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)

pytestmark = pytest.mark.unit

LAYOUT = NodeLayout(
    Path("/tmp/cp/node"),
    kubelet_port=10250,
    kubelet_healthz_port=10248,
    proxy_healthz_port=10256,
    proxy_metrics_port=10249,
)


def test_containerd_keeps_its_root_state_and_socket_under_the_node_directory() -> None:
    config = tomllib.loads(containerd_config(LAYOUT))
    assert config["root"] == "/tmp/cp/node/containerd/root"
    assert config["state"] == "/tmp/cp/node/containerd/state"
    assert config["grpc"]["address"] == str(LAYOUT.containerd_socket)
    runc = config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]
    assert runc["options"]["Root"] == "/tmp/cp/node/containerd/runc"


def test_containerd_cri_restricts_oom_scores_and_uses_the_pause_image_made_here() -> None:
    cri = tomllib.loads(containerd_config(LAYOUT))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["containerd"]["snapshotter"] == "native"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(LAYOUT.cni_conf_dir)


def test_cni_bridge_is_the_gateway_without_masquerading() -> None:
    network = json.loads(cni_conflist(LAYOUT))
    bridge = network["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["isGateway"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]]
    assert bridge["ipam"]["dataDir"] == "/tmp/cp/node/cni/ipam"


def test_kubelet_accepts_cgroup_v1_and_uses_the_node_containerd() -> None:
    config = yaml.safe_load(kubelet_config(LAYOUT))
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupsPerQOS"] is False
    assert config["enforceNodeAllocatable"] == []
    assert config["containerRuntimeEndpoint"] == f"unix://{LAYOUT.containerd_socket}"


def test_kubelet_serves_on_loopback_without_anonymous_access() -> None:
    config = yaml.safe_load(kubelet_config(LAYOUT))
    assert config["address"] == "127.0.0.1"
    assert config["port"] == 10250
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False


def test_kubelet_keeps_pod_logs_and_resolv_conf_under_the_node_directory() -> None:
    config = yaml.safe_load(kubelet_config(LAYOUT))
    assert config["podLogsDir"] == "/tmp/cp/node/pod-logs"
    assert config["resolvConf"] == "/tmp/cp/node/resolv.conf"


def test_kube_proxy_masquerades_service_traffic_and_leaves_conntrack_alone() -> None:
    config = yaml.safe_load(kube_proxy_config(LAYOUT))
    assert config["mode"] == "iptables"
    assert config["iptables"]["masqueradeAll"] is True
    assert config["clusterCIDR"] == POD_SUBNET
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["clientConnection"]["kubeconfig"] == "/tmp/cp/node/kubeconfig"
    assert config["healthzBindAddress"].startswith("127.0.0.1:")
