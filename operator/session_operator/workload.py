"""What the operator knows of a Session's workload Pod (pure decoding of Pod bodies)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from session_operator.models import SESSION_LABEL, SessionRef


@dataclass(frozen=True)
class PodSummary:
    """The facts of one labelled Pod that the lifecycle needs."""

    session: SessionRef
    name: str
    controller_uid: str | None
    phase: str
    ready: bool
    message: str

    @property
    def failed(self) -> bool:
        """The Pod ended without being asked to (phase Failed or Succeeded)."""
        return self.phase in ("Failed", "Succeeded")


@dataclass(frozen=True)
class Workload:
    """A Session's workload as observed: ``pod`` is ``None`` when it does not exist."""

    pod: PodSummary | None


def summarize_pod(body: Mapping[str, Any]) -> PodSummary | None:
    """Decode a session's workload Pod: labelled ``xg2g.io/session=<name>`` and named
    ``<name>``, as the operator creates it; ``None`` for any other Pod."""
    metadata = body.get("metadata") or {}
    session_name = (metadata.get("labels") or {}).get(SESSION_LABEL)
    if not session_name or metadata.get("name") != session_name:
        return None
    controller = next(
        (ref for ref in metadata.get("ownerReferences") or () if ref.get("controller")), None
    )
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return PodSummary(
        session=SessionRef(namespace=metadata["namespace"], name=session_name),
        name=metadata["name"],
        controller_uid=controller.get("uid") if controller else None,
        phase=status.get("phase") or "Pending",
        ready=ready,
        message=_pod_message(status),
    )


def _pod_message(status: Mapping[str, Any]) -> str:
    parts = [str(status[key]) for key in ("reason", "message") if status.get(key)]
    containers = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    for container in containers:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            detail = terminated.get("reason") or f"exit code {terminated.get('exitCode')}"
            parts.append(f"container {container.get('name')}: {detail}")
    return "; ".join(parts)
