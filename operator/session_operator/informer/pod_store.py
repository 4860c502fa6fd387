"""The workload Pods seen on the watch, keyed by the Session they belong to."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from session_operator.models import SessionRef
from session_operator.workload import PodSummary


class PodStore:
    """Latest summary of each labelled Pod, by session and Pod name."""

    def __init__(self) -> None:
        self._pods: dict[SessionRef, dict[str, PodSummary]] = {}
        self.listed = asyncio.Event()
        """Set once every workload Pod has been listed: a Pod missing from the store is
        then gone, or too new for the watch to have told it yet."""

    def update(self, pod: PodSummary) -> bool:
        """Remember *pod*'s latest state; whether it differs from what was known."""
        pods = self._pods.setdefault(pod.session, {})
        changed = pods.get(pod.name) != pod
        pods[pod.name] = pod
        return changed

    def remove(self, pod: PodSummary) -> None:
        """Forget a deleted Pod."""
        pods = self._pods.get(pod.session)
        if pods is not None:
            pods.pop(pod.name, None)
            if not pods:
                del self._pods[pod.session]

    def replace_all(self, pods: Iterable[PodSummary]) -> set[SessionRef]:
        """A fresh listing: exactly *pods* exist. The Sessions whose Pods it changed (one
        added, changed or gone)."""
        before = self._pods
        self._pods = {}
        for pod in pods:
            self._pods.setdefault(pod.session, {})[pod.name] = pod
        if not before:  # the first listing: every Session it names is news
            return set(self._pods)
        return {
            session
            for session in before.keys() | self._pods.keys()
            if before.get(session) != self._pods.get(session)
        }

    def mark_listed(self) -> None:
        """Every workload Pod has been listed."""
        self.listed.set()

    def get(self, session: SessionRef, session_uid: str) -> PodSummary | None:
        """The Pod of *session* that this very Session (by uid) controls, if known."""
        for pod in self._pods.get(session, {}).values():
            if pod.controller_uid == session_uid:
                return pod
        return None
