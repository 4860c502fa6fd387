"""The workload Pods seen on the watch, keyed by the Session they belong to."""

from __future__ import annotations

from session_operator.models import SessionRef
from session_operator.workload import PodSummary


class PodStore:
    """Latest summary of each labelled Pod, by session and Pod name."""

    def __init__(self) -> None:
        self._pods: dict[SessionRef, dict[str, PodSummary]] = {}

    def update(self, pod: PodSummary) -> None:
        """Remember *pod*'s latest state."""
        self._pods.setdefault(pod.session, {})[pod.name] = pod

    def remove(self, pod: PodSummary) -> None:
        """Forget a deleted Pod."""
        pods = self._pods.get(pod.session)
        if pods is not None:
            pods.pop(pod.name, None)
            if not pods:
                del self._pods[pod.session]

    def get(self, session: SessionRef, session_uid: str) -> PodSummary | None:
        """The Pod of *session* that this very Session (by uid) controls, if known."""
        for pod in self._pods.get(session, {}).values():
            if pod.controller_uid == session_uid:
                return pod
        return None
