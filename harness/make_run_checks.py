"""What ``make run`` checks before it builds or starts anything: that the operator's ports
are free (and, when they are not, whether another ``make run`` holds them), and that the
cluster ``KUBECONFIG`` names is there. Each failure is one line that names the fix."""

from __future__ import annotations

import errno
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# The operator's API tells itself apart by its answer to a request without a token: 401
# with its own realm (docs/API_CONTRACT.md).
API_DOCUMENT_PATH = "/api/v3/openapi.yaml"
API_REALM = 'realm="session-lease-operator"'
PROBE_SECONDS = 2.0


class RunRefused(RuntimeError):
    """``make run`` cannot start: a port is taken or ``KUBECONFIG`` is stale (one line)."""


def refuse_taken_port(host: str, port: int, variable: str) -> None:
    """:class:`RunRefused` if *port* cannot be listened on at *host*, saying whether
    another ``make run`` (the operator's API) holds it; *variable* chooses another port."""
    if not _port_taken(host, port):
        return
    if answers_as_the_operator(_reachable(host), port):
        raise RunRefused(
            f"another `make run` holds port {port} (its heartbeat API answers there): use"
            f" that one, stop it, or choose another port with {variable}"
        )
    raise RunRefused(
        f"cannot listen on {host} port {port}: already in use by another program; choose"
        f" another with {variable}"
    )


def answers_as_the_operator(host: str, port: int) -> bool:
    """Whether the operator's heartbeat API answers on *host*:*port* (plain HTTP)."""
    url = f"http://{_url_host(host)}:{port}{API_DOCUMENT_PATH}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with direct.open(url, timeout=PROBE_SECONDS):
            return False  # served without a token: not the operator's API
    except urllib.error.HTTPError as refusal:
        return refusal.code == 401 and API_REALM in refusal.headers.get("WWW-Authenticate", "")
    except (OSError, ValueError):
        return False


def refuse_stale_kubeconfig(kubeconfig: str) -> None:
    """:class:`RunRefused` if *kubeconfig* (the value of ``KUBECONFIG``) names no file, or
    its current context's apiserver does not answer."""
    files = [Path(name).expanduser() for name in kubeconfig.split(os.pathsep) if name]
    present = [path for path in files if path.is_file()]
    if not present:
        raise RunRefused(
            f"KUBECONFIG={kubeconfig} names no file (a stopped `make run` removes its own):"
            " unset KUBECONFIG to start a local control plane, or point it at a kubeconfig"
        )
    server = current_server(_documents(present))
    if server is None:
        return  # kubectl and the operator say better what is missing in the file
    problem = _unreachable(server)
    if problem is not None:
        raise RunRefused(
            f"the apiserver {server} of KUBECONFIG={kubeconfig} does not answer ({problem}):"
            " start that cluster, or unset KUBECONFIG to start a local control plane"
        )


def current_server(documents: list[dict[str, Any]]) -> str | None:
    """The apiserver URL of the current context of the kubeconfig *documents* merged as
    kubectl merges them (the first file to set a name wins); ``None`` if they name none."""
    current = next((d["current-context"] for d in documents if d.get("current-context")), None)
    if not isinstance(current, str):
        return None
    contexts = _named(documents, "contexts")
    clusters = _named(documents, "clusters")
    try:
        cluster_name = contexts[current]["context"]["cluster"]
        server = clusters[cluster_name]["cluster"]["server"]
    except (KeyError, TypeError):
        return None
    return str(server) if server else None


def _named(documents: list[dict[str, Any]], section: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for document in documents:
        for entry in document.get(section) or []:
            if isinstance(entry, dict) and "name" in entry:
                merged.setdefault(entry["name"], entry)
    return merged


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents


def _unreachable(server: str) -> str | None:
    """Why nothing answers at *server*'s address, or ``None`` when something does."""
    parts = urlsplit(server)
    if parts.hostname is None:
        return None
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return None
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_SECONDS):
            return None
    except TimeoutError:
        return f"no answer within {PROBE_SECONDS:g}s"
    except socket.gaierror:
        return f"unknown host {parts.hostname}"
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        return reason.lower()


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the operator's server binds: a port whose last connections linger is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            # Any other failure (an address not on this machine) the operator reports.
            return error.errno == errno.EADDRINUSE
    return False


def _reachable(host: str) -> str:
    """Where to connect to a server listening on *host* (any address: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
