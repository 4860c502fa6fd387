"""A Deployment's Pod run as a container on the harness's Docker engine, as a kubelet would
run it: for the tests of the image while the local control plane has no node.

The container gets what the Pod would get. The ServiceAccount's token, the cluster's CA and
the namespace are files under ``/var/run/secrets/kubernetes.io/serviceaccount``, and
``KUBERNETES_SERVICE_HOST`` and ``_PORT`` are set, to the apiserver's loopback address
(there is no Service routing). The container spec's environment is set, with fieldRefs to
the Pod's name and namespace resolved. Secret volumes become read-only files, emptyDir
volumes tmpfs. The user, group, fsGroup, read-only root filesystem, dropped capabilities,
no privilege escalation and memory limit are applied. The container shares the host's
network, so what it serves is on loopback.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.engine import DockerEngine
from tests.e2e.conftest import Cluster
from tests.e2e.heartbeats import create_token

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_POD_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class PodContainer:
    """The container running a Pod's one container."""

    engine: DockerEngine
    name: str

    def logs(self) -> str:
        """Everything the container wrote, stdout and stderr."""
        result = self.engine.docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exit_code(self) -> int | None:
        """The exit code once it has stopped; None while it runs."""
        state = self.engine.docker("inspect", "--format={{json .State}}", self.name).stdout
        parsed = json.loads(state)
        return None if parsed["Running"] else int(parsed["ExitCode"])

    def send_signal(self, signal_name: str) -> None:
        """Send *signal_name* (``TERM``, say) to the container's main process."""
        self.engine.docker("kill", f"--signal={signal_name}", self.name)

    def wait_for_exit(self, timeout: float) -> int | None:
        """Its exit code once it stops within *timeout* seconds; None if it still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                return code
            time.sleep(0.1)
        return self.exit_code()

    def remove(self) -> None:
        """Kill and remove it."""
        self.engine.docker("rm", "--force", self.name, check=False)


def run_pod(
    engine: DockerEngine, cluster: Cluster, deployment: dict[str, Any], pod: str, files: Path
) -> PodContainer:
    """Start the one container of *deployment*'s Pod template as Pod *pod*, with the files it
    mounts written under *files*."""
    namespace = deployment["metadata"]["namespace"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    argv = ["run", "--detach", f"--name={pod}", "--network=host"]
    argv += _service_account(cluster, namespace, spec["serviceAccountName"], files)
    argv += _volumes(cluster, namespace, spec, container, files)
    argv += _environment(container, pod, namespace)
    argv += _security(spec["securityContext"], container["securityContext"])
    memory = container.get("resources", {}).get("limits", {}).get("memory")
    if memory:
        argv.append(f"--memory={_docker_size(memory)}")
    command = container["command"]
    argv += [f"--entrypoint={command[0]}", container["image"], *command[1:], *container["args"]]
    engine.docker(*argv)
    return PodContainer(engine, pod)


def probe_url(deployment: dict[str, Any], probe: str) -> str:
    """The URL an HTTP *probe* (``readinessProbe``, say) of the Pod's container calls."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    action = container[probe]["httpGet"]
    port = action["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return f"{action['scheme'].lower()}://127.0.0.1:{port}{action['path']}"


def _service_account(cluster: Cluster, namespace: str, name: str, files: Path) -> list[str]:
    assert cluster.control_plane is not None, "needs the local control plane"
    directory = _directory(files / "serviceaccount")
    # The kubelet's projected token: the apiserver's own audience.
    token = create_token(cluster, namespace, name, audience=None)
    _write(directory / "token", token.encode())
    _write(directory / "ca.crt", cluster.control_plane.ca_file.read_bytes())
    _write(directory / "namespace", namespace.encode())
    server = urlsplit(cluster.control_plane.server)
    return [
        f"--mount=type=bind,source={directory},target={SERVICE_ACCOUNT_DIR},readonly",
        f"--env=KUBERNETES_SERVICE_HOST={server.hostname}",
        f"--env=KUBERNETES_SERVICE_PORT={server.port}",
    ]


def _volumes(
    cluster: Cluster, namespace: str, spec: dict[str, Any], container: dict[str, Any], files: Path
) -> list[str]:
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    argv = []
    for mount in container.get("volumeMounts", []):
        volume, target = volumes[mount["name"]], mount["mountPath"]
        if "emptyDir" in volume:
            argv.append(f"--tmpfs={target}")
        elif "secret" in volume:
            directory = _secret_files(cluster, namespace, volume["secret"], files / mount["name"])
            argv.append(f"--mount=type=bind,source={directory},target={target},readonly")
        else:
            raise AssertionError(f"volume {volume} is not one this stand-in for a node mounts")
    return argv


def _secret_files(cluster: Cluster, namespace: str, source: dict[str, Any], into: Path) -> Path:
    secret = json.loads(
        cluster.kubectl("get", "secret", source["secretName"], "-n", namespace, "-o", "json").stdout
    )
    directory = _directory(into)
    items = source.get("items") or [{"key": key, "path": key} for key in secret["data"]]
    for item in items:
        _write(directory / item["path"], base64.b64decode(secret["data"][item["key"]]))
    return directory


def _environment(container: dict[str, Any], pod: str, namespace: str) -> list[str]:
    fields = dict(zip(_POD_FIELDS, (pod, namespace), strict=True))
    argv = []
    for variable in container.get("env", []):
        if "value" in variable:
            value = variable["value"]
        else:
            value = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        argv.append(f"--env={variable['name']}={value}")
    return argv


def _security(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    context = {**pod, **container}
    argv = [f"--user={context['runAsUser']}:{context['runAsGroup']}"]
    if "fsGroup" in pod:
        argv.append(f"--group-add={pod['fsGroup']}")
    if context.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        argv.append("--security-opt=no-new-privileges")
    argv += [f"--cap-drop={cap}" for cap in context.get("capabilities", {}).get("drop", [])]
    # seccompProfile RuntimeDefault: the engine's default profile applies anyway.
    return argv


def _docker_size(quantity: str) -> str:
    for suffix, unit in (("Mi", "m"), ("Gi", "g")):
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + unit
    raise AssertionError(f"memory limit {quantity} is not in Mi or Gi")


def _directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the container's user may enter it, as a kubelet's volume
    return path


def _write(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o644)  # the kubelet's default mode of a volume's files
