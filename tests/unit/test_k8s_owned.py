"""Whether a DELETE's answer says the object is gone, or only going."""

from __future__ import annotations

from typing import Any

import pytest

from session_operator.k8s.owned import deletion_finished

GOING = {"deletionTimestamp": "2026-11-23T10:00:00Z"}


@pytest.mark.parametrize(
    ("answer", "gone"),
    [
        # A Pod no node runs: deleted at once, answered as it was, with grace period 0.
        ({"kind": "Pod", "metadata": {**GOING, "deletionGracePeriodSeconds": 0}}, True),
        # A kind without a grace period (a ConfigMap): deleted at once.
        ({"kind": "ConfigMap", "metadata": {"name": "c"}}, True),
        ({"kind": "Status", "status": "Success"}, True),
        # A Pod a kubelet runs: it has its grace period to end in.
        ({"kind": "Pod", "metadata": {**GOING, "deletionGracePeriodSeconds": 30}}, False),
        # Anything with a finalizer waits for it.
        ({"kind": "Pod", "metadata": {**GOING, "deletionGracePeriodSeconds": 0,
                                      "finalizers": ["example.com/keep"]}}, False),
    ],
)  # fmt: skip
def test_an_object_is_gone_unless_a_grace_period_or_a_finalizer_holds_it(
    answer: dict[str, Any], gone: bool
) -> None:
    assert deletion_finished(answer) is gone
