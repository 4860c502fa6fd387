"""Helpers for e2e tests of the heartbeat API: real ServiceAccount tokens, plain HTTP calls."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_operator.config import DEFAULT_TOKEN_AUDIENCE
from tests.e2e.conftest import Cluster
from tests.e2e.sessions import create_session, wait_for_state


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers, decoded JSON body (``{}`` if not JSON), seconds taken."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    seconds: float


def service_account(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    bind_in: str | None = None,
    audience: str = DEFAULT_TOKEN_AUDIENCE,
    bound_secret: str | None = None,
) -> str:
    """Create ServiceAccount *namespace*/*name*, bind it to ``session-heartbeat`` in
    *bind_in* (if given), and return a fresh token for it, for *audience* (the operator's)."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if bind_in is not None:
        bind_heartbeat_role(cluster, bind_in, namespace, name)
    return create_token(cluster, namespace, name, audience=audience, bound_secret=bound_secret)


def bind_heartbeat_role(cluster: Cluster, bind_in: str, namespace: str, name: str) -> None:
    """RoleBinding in *bind_in* of ClusterRole ``session-heartbeat`` to a ServiceAccount."""
    cluster.kubectl(
        "create", "rolebinding", f"{name}-heartbeat", "-n", bind_in,
        "--clusterrole=session-heartbeat", f"--serviceaccount={namespace}:{name}",
    )  # fmt: skip


def create_token(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    audience: str | None = DEFAULT_TOKEN_AUDIENCE,
    bound_secret: str | None = None,
) -> str:
    """A new token of ServiceAccount *namespace*/*name* (TokenRequest) for *audience* (the
    operator's default; ``None``: the apiserver's own), optionally bound to Secret
    *bound_secret* (it dies with the Secret)."""
    args = ["create", "token", name, "-n", namespace, "--duration=1h"]
    if audience is not None:
        args.append(f"--audience={audience}")
    if bound_secret is not None:
        args += ["--bound-object-kind=Secret", f"--bound-object-name={bound_secret}"]
    return cluster.kubectl(*args).stdout.strip()


def ready_session(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """Create a Session, wait until it is ready; its sessionID."""
    create_session(cluster, namespace, name, spec)
    body, _ = wait_for_state(cluster, namespace, name, {"ready"}, timeout=5)
    session_id: str = body["status"]["sessionID"]
    return session_id


def player_token_file(cluster: Cluster, namespace: str, directory: Path) -> Path:
    """A token file of ServiceAccount ``player``, created and bound in *namespace*."""
    token_file = directory / "token"
    token_file.write_text(service_account(cluster, namespace, "player", bind_in=namespace))
    return token_file


def heartbeat_path(namespace: str, name: str) -> str:
    """The Kubernetes-native heartbeat path of a session."""
    return f"/api/v3/namespaces/{namespace}/sessions/{name}/heartbeat"


def call(
    method: str,
    url: str,
    token: str | None = None,
    *,
    authorization: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """Send one request; *token* becomes ``Authorization: Bearer``, unless *authorization*
    gives the whole header. *tls*: the client context of an ``https`` URL."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if authorization is None and token is not None:
        authorization = f"Bearer {token}"
    if authorization is not None:
        request.add_header("Authorization", authorization)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=15, context=tls) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    return Reply(
        status, headers, body if isinstance(body, dict) else {}, time.monotonic() - started
    )
