"""The one watch of the workload Pods in a process, selected by the apiserver by their
``xg2g.io/session`` label: the cluster's other Pods never reach the operator."""

from __future__ import annotations

from session_operator.informer.reflector import Reflector, Sink
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, skipping_undecodable
from session_operator.models import SESSION_LABEL
from session_operator.workload import PodSummary, summarize_pod

RESOURCE = "pods"
"""The ``resource`` label of the watch's metrics."""


class PodCache(Reflector[PodSummary, PodSummary]):
    """Lists and watches the workload Pods into *sink*, each as its :class:`PodSummary`."""

    def __init__(self, list_watch: ListWatch, sink: Sink[PodSummary, PodSummary]) -> None:
        super().__init__(list_watch, sink, _decode, _itself, RESOURCE)

    @classmethod
    def for_namespace(
        cls, rest: Rest, namespace: str | None, sink: Sink[PodSummary, PodSummary]
    ) -> PodCache:
        """A watch through *rest* of the workload Pods in *namespace* (``None``: in all
        namespaces)."""
        return cls(ListWatch(rest, pods_path(namespace), label_selector=SESSION_LABEL), sink)


def pods_path(namespace: str | None) -> str:
    """The API path of the Pods of *namespace* (``None``: of all namespaces)."""
    return f"/api/v1/namespaces/{namespace}/pods" if namespace is not None else "/api/v1/pods"


def _itself(pod: PodSummary) -> PodSummary:
    return pod


_decode = skipping_undecodable(summarize_pod, "pod cache")
