"""Run a real local control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.

The envtest way: real binaries on free ports in a temporary directory, an admin
token, a ServiceAccount signing key pair (so ServiceAccount tokens and TokenReview
work), RBAC authorization, and a kubeconfig for clients. No component takes an
unauthenticated client, since any user of the machine can reach loopback: etcd wants a
certificate of the control plane's own CA (:mod:`harness.etcd_certificates`), the
apiserver a token or a certificate (no anonymous requests). Every process is stopped
when the control plane is stopped, when the owning process exits, and on a
SIGTERM; a child also dies with its parent (``PR_SET_PDEATHSIG``) should the
parent be killed outright.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.binaries import Toolchain
from harness.etcd_certificates import EtcdCertificates, write_etcd_certificates
from harness.processes import (
    exit_on_sigterm,
    log_excerpt,
    remove_unmounted_tree,
    spawn,
    terminate,
)

ADMIN_USER = "xg2g-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """A control-plane component failed to start or become ready."""


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Kubectl:
    """A kubectl binary bound to one kubeconfig."""

    binary: Path
    kubeconfig: Path

    def __call__(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS``; raise :class:`KubectlError` on a non-zero exit when *check*."""
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, timeout=120
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result


@dataclass
class _Component:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class LocalControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started and stopped together.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    toolchain: Toolchain
    workdir: Path | None = None
    etcd_fsync: bool = True
    startup_timeout: float = 60.0
    apiserver_args: tuple[str, ...] = ()
    """More kube-apiserver flags (a test's authentication webhook, say)."""
    components: list[_Component] = field(default_factory=list, init=False)
    kubeconfig: Path = field(init=False)
    etcd_url: str = field(init=False)
    etcd_certificates: EtcdCertificates = field(init=False)
    server: str = field(init=False)
    admin_token: str = field(init=False)
    ca_file: Path = field(init=False)
    _owns_workdir: bool = field(default=False, init=False)

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd, then kube-apiserver, then kube-controller-manager; wait for each."""
        missing = self.toolchain.missing()
        if missing:
            raise ControlPlaneError(f"control-plane binaries missing: {missing}; build them first")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="xg2g-controlplane-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        exit_on_sigterm()
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component (newest first) and remove a temporary working directory."""
        for component in reversed(self.components):
            terminate(component.process)
        self.components.clear()
        if self._owns_workdir and self.workdir is not None:
            remove_unmounted_tree(self.workdir)

    def component(self, name: str) -> subprocess.Popen[bytes]:
        """The running process of component *name* (for fault-injection tests)."""
        process = self._component(name).process
        if process is None:
            raise KeyError(name)
        return process

    def restart(self, name: str) -> None:
        """Stop component *name* (SIGTERM) and start it again with the same flags, ports
        and data; return once it is ready again (a fault the harness injects)."""
        component = self._component(name)
        terminate(component.process)
        with component.log_path.open("ab") as log:
            component.process = spawn(component.argv, log)
        self._wait_until(component, self._readiness(name))

    def _component(self, name: str) -> _Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def etcd_client_context(self) -> ssl.SSLContext:
        """A TLS context with which a client reaches :attr:`etcd_url` (etcd takes only
        clients with a certificate of this control plane's CA)."""
        return self.etcd_certificates.client_context()

    def _readiness(self, name: str) -> Callable[[], bool]:
        if name == "etcd":
            return lambda: _http_ok(f"{self.etcd_url}/health", self.etcd_client_context())
        if name == "kube-apiserver":
            return self._apiserver_ready
        return self._default_service_account_exists

    @property
    def kubectl(self) -> Kubectl:
        """The matching kubectl, pointed at this control plane."""
        return Kubectl(self.toolchain.kubectl, self.kubeconfig)

    # -- components ---------------------------------------------------------------

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        client_port, peer_port = free_port(), free_port()
        client_url = f"https://127.0.0.1:{client_port}"
        peer_url = f"https://127.0.0.1:{peer_port}"
        tls = self.etcd_certificates = write_etcd_certificates(self.workdir / "pki" / "etcd")
        argv = [
            str(self.toolchain.etcd),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            f"--cert-file={tls.server_certificate}",
            f"--key-file={tls.server_key}",
            "--client-cert-auth",
            f"--trusted-ca-file={tls.ca}",
            # The peer port is no back door: it wants a certificate of the same CA.
            f"--peer-cert-file={tls.server_certificate}",
            f"--peer-key-file={tls.server_key}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={tls.ca}",
            "--log-level=warn",
        ]
        if not self.etcd_fsync:
            argv.append("--unsafe-no-fsync")
        self.etcd_url = client_url
        component = self._spawn("etcd", argv)
        self._wait_until(component, self._readiness("etcd"))

    def _start_apiserver(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        service_account_key = pki / "service-account.key"
        _write_rsa_key(service_account_key)
        self.admin_token = secrets.token_urlsafe(32)
        tokens = pki / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        argv = [
            str(self.toolchain.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-cafile={self.etcd_certificates.ca}",
            f"--etcd-certfile={self.etcd_certificates.client_certificate}",
            f"--etcd-keyfile={self.etcd_certificates.client_key}",
            f"--cert-dir={pki}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.96.0.0/24",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={service_account_key}",
            f"--service-account-signing-key-file={service_account_key}",
            f"--token-auth-file={tokens}",
            "--anonymous-auth=false",
            "--authorization-mode=Node,RBAC",
            # As strict as the strictest common clusters: an owner reference that blocks its
            # owner's deletion needs update on the owner's finalizers.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            # Without it a SIGTERM waits for every open watch to end (a user's
            # `kubectl get -w`) and the apiserver outlives its grace: stop in about a second.
            "--shutdown-watch-termination-grace-period=1s",
            *self.apiserver_args,
        ]
        component = self._spawn("kube-apiserver", argv)
        self.ca_file = pki / "apiserver.crt"
        self._wait_until(component, lambda: self.ca_file.exists())
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig_document()))
        self.kubeconfig.chmod(0o600)
        self._wait_until(component, lambda: self._apiserver_ready())

    def _start_controller_manager(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        argv = [
            str(self.toolchain.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={self.ca_file}",
            "--controllers=*,-nodeipam,-nodelifecycle",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ]
        component = self._spawn("kube-controller-manager", argv)
        # The ServiceAccount controller creating `default` shows the controllers run.
        self._wait_until(component, self._default_service_account_exists)

    # -- helpers ------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> _Component:
        assert self.workdir is not None
        component = _Component(name, list(argv), self.workdir / f"{name}.log")
        with component.log_path.open("wb") as log:
            component.process = spawn(component.argv, log)
        self.components.append(component)
        return component

    def _wait_until(self, component: _Component, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert component.process is not None
        while time.monotonic() < deadline:
            if component.process.poll() is not None:
                raise ControlPlaneError(
                    f"{component.name} exited with code {component.process.returncode}"
                    f" during start\n{log_excerpt(component.log_path)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{component.name} not ready after {self.startup_timeout:.0f}s\n"
            f"{log_excerpt(component.log_path)}"
        )

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.server}/readyz", self._apiserver_context(), self.admin_token)

    def _default_service_account_exists(self) -> bool:
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        return _http_ok(url, self._apiserver_context(), self.admin_token)

    def _apiserver_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _kubeconfig_document(self) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": ADMIN_USER}}],
            "current-context": "local",
        }


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_rsa_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _http_ok(url: str, context: ssl.SSLContext, token: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False
