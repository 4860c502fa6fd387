"""Kubeconfig files for tests that load one without reaching its apiserver."""

from __future__ import annotations

from pathlib import Path

import yaml


def unreachable_kubeconfig(path: Path) -> Path:
    """Write at *path* a valid kubeconfig for an apiserver nobody listens for; return *path*."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path
