"""What a replica's memory pays for Sessions as large as the size webhook admits.

Every replica holds every Session. 1,000 Sessions stored at just under ``maxSessionBytes``
(128 KiB of JSON by default, managedFields included) are created before the operator
starts, so that it reads them all in its start-up LIST, and then through the watch as it
writes their status, state label and finalizer. What makes them large is what a user with
``edit`` rights in a namespace may make large: labels, annotations, other controllers'
finalizers and ``spec.template``. The operator keeps about 2 KiB of each
(docs/security.md), so its memory stays well inside the chart's 256 Mi limit.

Their keys are long: the apiserver's time goes per entry, and short ones would make the
creation slow. Short entries, the most memory per byte, are measured by
tests/unit/test_models.py and in docs/security.md. No size webhook runs here (the Sessions
are made just under its limit instead), and the control plane is this module's own: the
shared one's operator must not hold them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.kube import ApiServer
from harness.operator_process import OperatorProcess
from session_operator.config import Settings
from session_operator.models import STATE_LABEL, sessions_path
from tests.e2e.conftest import REPO, Cluster, private_control_plane, wait_for

pytestmark = pytest.mark.e2e

SESSIONS = 1_000
ADMITTED_BYTES: int = Settings.model_fields["max_session_bytes"].default
CREATE_CONCURRENCY = 16
RSS_BOUND_MIB = 192
"""Three quarters of the chart's 256 Mi limit, the rest headroom for what this test does not
do (heartbeats, reviews, Pods). Measured: a peak of 130 MiB. With the model and the LIST as
they were (labels and finalizers kept, pages of 500), the listing of these Sessions alone
peaked at 332 MiB and kept 39 KiB of each (tracemalloc)."""
GROWTH_BOUND_MIB = 48
"""Above an operator that holds no Session: 1,000 x ~2 KiB kept, and what Python keeps of
the LIST's freed pages for reuse (16-25 MiB in all, measured). As it was, the labels and
finalizers alone took 39 MiB."""
SERVER_FIELDS_BYTES = 1024
"""What the apiserver adds to a created Session besides managedFields' entries: uid,
resourceVersion, creationTimestamp, managedFields' own header (about 700 bytes)."""
TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"
LABEL_VALUE = "v" * 63
NOTE = "x" * 1000


@dataclass(frozen=True)
class Memory:
    """A process's resident memory, from ``/proc/PID/status``, in MiB."""

    rss: float
    peak: float

    @classmethod
    def of(cls, pid: int) -> Memory:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        return cls(
            rss=int(fields["VmRSS"].split()[0]) / 1024, peak=int(fields["VmHWM"].split()[0]) / 1024
        )


@dataclass(frozen=True)
class Crowd:
    """A control plane with :data:`SESSIONS` large Sessions in *namespace*."""

    cluster: Cluster
    namespace: str
    empty_namespace: str
    stored_bytes: list[int]


def padded_session(namespace: str, index: int) -> dict[str, Any]:
    """Session *index*, stored just under :data:`ADMITTED_BYTES` of JSON.

    The size the webhook checks is the object's as stored, with the ``managedFields``
    that the apiserver adds (an entry per label, annotation and finalizer), so they are
    counted here. Keys and finalizers are long (what the apiserver checks per entry is what
    makes a create slow) and unique to the Session, as a real one's would be. Every other
    Session carries a template and ``spec.stop``: stopped at creation, it needs no Pod
    (this control plane has no node); the others are live, with an hour's lease.
    """
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    finalizers: list[str] = []
    spec: dict[str, Any] = {"lease": {"ttlSeconds": 3600, "heartbeatIntervalSeconds": 600}}
    template_annotations: dict[str, str] = {}
    stopped = index % 2 == 0
    if stopped:
        spec |= {
            "stop": True,
            "template": {
                "metadata": {"annotations": template_annotations},
                "spec": {"containers": [{"name": "main", "image": "registry.example/player:1"}]},
            },
        }
    body = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": f"s-{index:04d}", "namespace": namespace, "labels": labels,
                     "annotations": annotations, "finalizers": finalizers},
        "spec": spec,
    }  # fmt: skip
    size = len(json.dumps(body, separators=(",", ":"))) + SERVER_FIELDS_BYTES
    kinds = ["label", "annotation", "finalizer"] + (["template"] if stopped else [])
    for entry in itertools.count():
        short = f"k{index:04d}-{entry:04d}"
        qualified = ".".join(["a" * 60] * 3 + [short, "example.com"]) + "/" + "n" * 60
        kind = kinds[entry % len(kinds)]
        # The entry's JSON with its comma, and its managedFields entry: "f:key":{}, for a
        # key of a map, "v:\"name\"":{}, for a finalizer.
        if kind == "label":
            grows = len(qualified) + len(LABEL_VALUE) + 6 + len(qualified) + 8
        elif kind == "finalizer":
            grows = len(qualified) + 3 + len(qualified) + 12
        else:
            grows = len(short) + len(NOTE) + 6 + len(short) + 8
        if size + grows > ADMITTED_BYTES:
            break
        size += grows
        if kind == "label":
            labels[qualified] = LABEL_VALUE
        elif kind == "finalizer":
            finalizers.append(qualified)
        elif kind == "annotation":
            annotations[short] = NOTE
        else:
            template_annotations[short] = NOTE
    return body


async def create_sessions(cluster: Cluster, namespace: str) -> list[int]:
    """Create the :data:`SESSIONS` padded Sessions in *namespace*, several at once; their
    sizes as stored, in bytes of JSON."""
    plane = cluster.control_plane
    assert plane is not None
    sizes: list[int] = []
    pending = iter(range(SESSIONS))

    async def creator(api: ApiServer) -> None:
        for index in pending:
            created = await api.expect(
                "POST", sessions_path(namespace), padded_session(namespace, index)
            )
            sizes.append(len(json.dumps(created, separators=(",", ":"))))

    async with ApiServer(plane.server, plane.admin_token, plane.ca_file) as api:
        await asyncio.gather(*(creator(api) for _ in range(CREATE_CONCURRENCY)))
    return sizes


async def unlabelled_sessions(cluster: Cluster, namespace: str) -> int:
    """How many Sessions of *namespace* have no state label yet, from a table of their
    names (not the objects: 128 MiB)."""
    plane = cluster.control_plane
    assert plane is not None
    async with (
        ApiServer(plane.server, plane.admin_token, plane.ca_file) as api,
        api.http.get(
            plane.server + sessions_path(namespace),
            params={"labelSelector": f"!{STATE_LABEL}", "includeObject": "None"},
            headers={"Accept": TABLE},
        ) as response,
    ):
        response.raise_for_status()
        table = await response.json()
    return len(table.get("rows") or [])


def sessions_by_state(operator: OperatorProcess) -> dict[str, float]:
    """The operator's ``xg2g_sessions{state}`` gauge."""
    status, page = operator.get("/metrics")
    assert status == 200
    counts: dict[str, float] = {}
    for line in page.splitlines():
        if line.startswith('xg2g_sessions{state="'):
            sample, value = line.rsplit(" ", 1)
            counts[sample.split('"')[1]] = float(value)
    return counts


def started_operator(cluster: Cluster, namespace: str, log: Path) -> OperatorProcess:
    """The operator watching *namespace* alone, its own leader, ready (its store synced)."""
    operator = OperatorProcess(
        cluster.kubeconfig,
        log,
        {"XG2G_SESSION_NAMESPACE": namespace, "XG2G_SESSION_LEADER_ELECTION": "false"},
    )
    operator.start(within=60)
    return operator


@pytest.fixture(scope="module")
def crowd() -> Iterator[Crowd]:
    """A control plane of its own with the large Sessions created (and an empty namespace
    beside them); the whole control plane goes when the module ends."""
    with private_control_plane() as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/sessions.xg2g.io")
        cluster.kubectl("create", "namespace", "crowded")
        cluster.kubectl("create", "namespace", "empty")
        sizes = asyncio.run(create_sessions(cluster, "crowded"))
        yield Crowd(cluster, "crowded", "empty", sizes)


def test_large_sessions_cost_a_replica_little_memory_after_its_listing(
    crowd: Crowd, tmp_path: Path
) -> None:
    assert len(crowd.stored_bytes) == SESSIONS
    assert min(crowd.stored_bytes) >= ADMITTED_BYTES - 8192
    assert max(crowd.stored_bytes) <= ADMITTED_BYTES

    idle = started_operator(crowd.cluster, crowd.empty_namespace, tmp_path / "idle.log")
    try:
        baseline = Memory.of(idle.pid)
    finally:
        idle.stop()

    operator = started_operator(crowd.cluster, crowd.namespace, tmp_path / "operator.log")
    try:
        listed = Memory.of(operator.pid)
        # It initialises every one (status, then state label and finalizer) and reads each
        # write back through its watch: 2,000 more events of 128 KiB.
        settled = wait_for(
            lambda: (
                sessions_by_state(operator).get("ready") == SESSIONS / 2
                and sessions_by_state(operator).get("stopped") == SESSIONS / 2
                and asyncio.run(unlabelled_sessions(crowd.cluster, crowd.namespace)) == 0
            ),
            timeout=240,  # about 80 s here: the apiserver's time for 3,000 writes
            interval=1.0,
        )
        assert settled, (sessions_by_state(operator), operator.log_tail())
        held = Memory.of(operator.pid)
    finally:
        operator.stop()

    report = (
        f"no sessions: RSS {baseline.rss:.0f} MiB; {SESSIONS} listed: RSS {listed.rss:.0f} MiB,"
        f" peak {listed.peak:.0f} MiB; all initialised: RSS {held.rss:.0f} MiB,"
        f" peak {held.peak:.0f} MiB"
    )
    print(report)
    assert held.peak <= RSS_BOUND_MIB, report
    assert held.rss - baseline.rss <= GROWTH_BOUND_MIB, report
