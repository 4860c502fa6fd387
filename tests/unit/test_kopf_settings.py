"""kopf's settings: the apiserver itself filters the Pods kopf lists and watches."""

from __future__ import annotations

import kopf
import pytest

from session_operator.models import SESSION_LABEL
from session_operator.runtime import kopf_settings

pytestmark = pytest.mark.unit

# Core v1 Pods as kopf discovers them on a real apiserver.
CORE_PODS = kopf.Resource(
    "",
    "v1",
    "pods",
    kind="Pod",
    singular="pod",
    shortcuts=frozenset({"po"}),
    categories=frozenset({"all"}),
    namespaced=True,
    preferred=True,
    verbs=frozenset({"list", "watch", "get", "patch"}),
)


def test_the_pod_list_and_watch_ask_only_for_pods_of_a_session() -> None:
    selectors = kopf_settings().watching.label_selectors
    # kopf joins what it collects into the labelSelector of its list and watch requests;
    # a bare key is Kubernetes' existence selector.
    assert selectors.collect(CORE_PODS) == [SESSION_LABEL]


@pytest.mark.parametrize(
    "resource",
    [
        kopf.Resource("metrics.k8s.io", "v1beta1", "pods", kind="PodMetrics"),
        kopf.Resource("xg2g.io", "v1alpha1", "sessions", kind="Session"),
        kopf.Resource("", "v1", "namespaces", kind="Namespace"),
    ],
)
def test_other_resources_are_not_filtered_by_the_session_label(resource: kopf.Resource) -> None:
    assert kopf_settings().watching.label_selectors.collect(resource) == []
