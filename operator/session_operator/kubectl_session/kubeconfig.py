"""The person's kubeconfig, as kubectl reads it: its files, the context, the namespace."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from session_operator.kubectl_session.errors import CommandError

DEFAULT_KUBECONFIG = "~/.kube/config"
DEFAULT_NAMESPACE = "default"
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """Where the commands go: the kubeconfig *files* (``KUBECONFIG`` form), the *context*
    used in them (``None``: the current one) and the *namespace* of a bare name."""

    files: str
    context: str | None
    namespace: str


def resolve(kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """The target of ``--kubeconfig``, ``--context`` and ``-n`` as kubectl chooses it: the
    flag, else ``KUBECONFIG``, else ``~/.kube/config``; the context of ``--context``, else
    the current one; ``-n``, else the context's namespace, else ``default``. A file,
    context or current context that is not there is a :class:`CommandError` naming it."""
    variable = os.environ.get("KUBECONFIG")
    files = kubeconfig or variable or DEFAULT_KUBECONFIG
    if not any(Path(name).expanduser().is_file() for name in files.split(os.pathsep) if name):
        if kubeconfig:
            raise CommandError(f"--kubeconfig {kubeconfig} names no file")
        if variable:
            raise CommandError(
                f"KUBECONFIG={variable} names no file: point it at a kubeconfig file, or unset"
                f" it to use {DEFAULT_KUBECONFIG}"
            )
        raise CommandError(
            f"no kubeconfig at {DEFAULT_KUBECONFIG}: give --kubeconfig FILE or set KUBECONFIG"
        )
    try:
        contexts, current = config.list_kube_config_contexts(files)
    except (config.ConfigException, OSError, ValueError) as error:
        raise CommandError(f"cannot read the kubeconfig {files}: {error}") from None
    chosen = _context(contexts, current, context, files)
    return Target(
        files=files,
        context=context,
        namespace=namespace or str(chosen.get("context", {}).get("namespace") or DEFAULT_NAMESPACE),
    )


def _context(
    contexts: list[dict[str, Any]], current: dict[str, Any] | None, name: str | None, files: str
) -> dict[str, Any]:
    if name is None:
        if current is None:
            raise CommandError(
                f"the kubeconfig {files} has no current context: give --context NAME"
            )
        return current
    for candidate in contexts:
        if candidate.get("name") == name:
            return candidate
    raise CommandError(f'context "{name}" not found in the kubeconfig {files}')


async def api_client(target: Target) -> client.ApiClient:
    """An API client with the credentials of *target*'s context; the kubeconfig is read,
    never written (a refreshed token is not saved back)."""
    configuration = client.Configuration()
    try:
        await config.load_kube_config(
            config_file=target.files,
            context=target.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, OSError, ValueError) as error:
        raise CommandError(f"cannot use the kubeconfig {target.files}: {error}") from None
    return client.ApiClient(configuration)


def server(api: client.ApiClient) -> str:
    """The apiserver's URL, for messages."""
    return str(api.configuration.host)
