"""What the Pod watch tells the controller: each change of a workload Pod is kept in the
:class:`PodStore` its reconciles read, and queues the Pod's Session."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from session_operator.informer.pod_store import PodStore
from session_operator.models import SessionRef
from session_operator.workload import PodSummary


class PodFeed:
    """The Pod watch's sink: keeps *store*, and hands *queue* the Session of a Pod that
    changed (a listing queues only those whose Pods it changed, not every one)."""

    def __init__(self, store: PodStore, queue: Callable[[SessionRef], None]) -> None:
        self._store = store
        self._queue = queue

    def update(self, pod: PodSummary) -> None:
        """A Pod was added or changed."""
        if self._store.update(pod):
            self._queue(pod.session)

    def remove(self, pod: PodSummary) -> None:
        """A Pod is gone."""
        self._store.remove(pod)
        self._queue(pod.session)

    def replace_all(self, pods: Iterable[PodSummary]) -> None:
        """A fresh listing: exactly *pods* exist."""
        for session in self._store.replace_all(pods):
            self._queue(session)

    def mark_synced(self) -> None:
        """Every workload Pod has been listed."""
        self._store.mark_listed()
