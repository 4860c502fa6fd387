"""``make bench``: start a local control plane and the operator, measure, print one table.

The run is bounded (under 10 minutes on a 2-core machine; ``--quick`` in well under one)
and quiet: the operator's and the control plane's logs go to files in a temporary
directory, progress goes to stderr, the table to stdout, and the same figures as JSON to
``bench/results/<timestamp>.json``.

The raw ceiling is measured first, before the operator starts. Then two populations in
turn: N = 1,000 live Sessions, created as users do; then 9,000 more, seeded, for
N = 10,000 (see :class:`Stage` for the kinds of Session each holds). The expiry phases
run last, at N = 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.context import IDLER_LEASE, WRITER_LEASE, Bench, SessionName
from bench.kube import ApiServer
from bench.load import Rotation
from bench.machine import describe_machine
from bench.operator_process import OperatorProcess
from bench.phases import (
    WRITER_GAP,
    duplicate_heartbeats,
    expiry,
    heartbeats,
    idle_cost,
    patch_lead,
    raw_ceiling,
    same_instant,
    staggered,
    warm_up,
)
from bench.population import populate, populate_seeded, seed_unwatched
from bench.progress import Progress
from bench.report import Results, as_json, render
from session_operator.config import DEFAULT_TOKEN_AUDIENCE
from session_operator.devcluster import LocalControlPlane, ensure_built, toolchain

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
WATCHED = "bench"
"""The namespace of the Sessions under test, the only one the operator watches."""
UNWATCHED = "bench-raw"
"""Sessions for the raw ceiling, outside the operator's namespace: nothing reacts to them."""
CLIENT = "bench-client"
HEARTBEAT_ROLE = "bench-session-heartbeat"


@dataclass(frozen=True)
class Stage:
    """Sessions added for one population, named ``<prefix>-<kind>-NNNNN``: *writers* (w,
    interval 1 s), *idlers* (i, 3600 s, beaten again inside it), *duplicates* (d, 3600 s,
    never beaten before the duplicate burst) and *expirers* (e, interval 1 s, never beaten,
    for the expiry phases: with a short interval an outage the operator records forgives
    a lapse for 2 s at most, SPEC rule 8). *seeded*: created as the operator leaves a
    ready session, not made ready by it."""

    prefix: str
    writers: int
    idlers: int
    duplicates: int
    expirers: int = 0
    seeded: bool = False

    @property
    def size(self) -> int:
        """Sessions this stage adds."""
        return self.writers + self.idlers + self.duplicates + self.expirers


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does."""

    mode: str
    stages: tuple[Stage, ...]
    concurrencies: tuple[int, ...]
    raw_sessions: int
    raw_seconds: float
    write_seconds: float
    noop_seconds: float
    idle_seconds: float
    noop_pool: int
    duplicate_copies: int
    staggered_sessions: int
    staggered_window: float
    burst_sessions: int
    expiry_grace: float
    setup_timeout: float
    cleanup_wait: float

    @classmethod
    def full(cls) -> Plan:
        """N = 1,000 then 10,000 live sessions."""
        return cls(
            mode="full",
            stages=(
                Stage("a", writers=700, idlers=200, duplicates=100),
                Stage("b", writers=0, idlers=6900, duplicates=100, expirers=2000, seeded=True),
            ),
            concurrencies=(8, 32, 64),
            raw_sessions=500,
            raw_seconds=5.0,
            write_seconds=6.0,
            noop_seconds=5.0,
            idle_seconds=15.0,
            noop_pool=1000,
            duplicate_copies=4,
            staggered_sessions=1000,
            staggered_window=20.0,
            burst_sessions=1000,
            expiry_grace=30.0,
            setup_timeout=300.0,
            cleanup_wait=1.0,
        )

    @classmethod
    def quick(cls) -> Plan:
        """A smoke run with tiny numbers: every phase once, in about a minute."""
        return cls(
            mode="quick",
            stages=(
                Stage("a", writers=40, idlers=15, duplicates=5),
                Stage("b", writers=0, idlers=35, duplicates=5, expirers=100, seeded=True),
            ),
            concurrencies=(8,),
            raw_sessions=40,
            raw_seconds=1.0,
            write_seconds=1.5,
            noop_seconds=1.0,
            idle_seconds=1.0,
            noop_pool=50,
            duplicate_copies=4,
            staggered_sessions=40,
            staggered_window=2.0,
            burst_sessions=60,
            expiry_grace=15.0,
            setup_timeout=60.0,
            cleanup_wait=0.3,
        )

    def steps(self) -> dict[str, float]:
        """The run's steps with their expected seconds (the progress bar's weights)."""
        steps = {"control plane": 8.0, "raw sessions": 2.0 + self.raw_sessions / 150}
        for c in self.concurrencies:
            steps[f"raw - {c}"] = self.raw_seconds + 1
        steps["operator"] = 3.0
        live = writers = 0
        for index, stage in enumerate(self.stages):
            live += stage.size
            writers += stage.writers
            steps[f"populate {index}"] = 4.0 + stage.size / (150 if stage.seeded else 50)
            steps[f"idle {index}"] = self.idle_seconds
            for c in self.concurrencies:
                steps[f"raw {index} {c}"] = self.raw_seconds + 1
                steps[f"write {index} {c}"] = self.write_seconds + 1
                steps[f"noop {index} {c}"] = self.noop_seconds + 1
            steps[f"warm writers {index}"] = 1.0 + writers / (150 if index == 0 else 80)
            steps[f"warm pool {index}"] = 1.0 + min(self.noop_pool, live) / 200
            steps[f"duplicates {index}"] = 3.0 + stage.duplicates / 20
        steps["staggered"] = self.staggered_window + 10
        steps["burst"] = 5.0 + self.burst_sessions / 50
        return steps


async def measure(
    plan: Plan, plane: LocalControlPlane, workdir: Path, progress: Progress
) -> Results:
    """Run every phase against *plane*; the operator is started and stopped here."""
    async with (
        ApiServer(plane.server, plane.admin_token, plane.ca_file) as api,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
        ) as http,
    ):
        kubernetes = (await api.expect("GET", "/version"))["gitVersion"]
        async with http.get(plane.etcd_url + "/version") as response:
            etcd = (await response.json())["etcdserver"]
        results = Results(
            machine=describe_machine(str(kubernetes), str(etcd)),
            mode=plan.mode,
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        token = await _grant_heartbeats(api)
        operator = OperatorProcess(
            plane.kubeconfig,
            workdir / "operator.log",
            {"XG2G_SESSION_NAMESPACE": WATCHED},
            log_level="WARNING",
        )
        pids = {
            "kube-apiserver": plane.component("kube-apiserver").pid,
            "etcd": plane.component("etcd").pid,
            "bench": os.getpid(),
        }
        bench = Bench(api, http, operator, pids, token, progress, plan.cleanup_wait)
        try:
            await _run_phases(plan, bench, results)
        except Exception as error:  # report what was measured before the failure
            results.error = f"{type(error).__name__}: {error}"
            progress.note(f"aborted: {results.error}")
            if not operator.alive():
                progress.note(f"operator log (end):\n{operator.log_tail()}")
        finally:
            operator.stop()
        return results


async def _grant_heartbeats(api: ApiServer) -> str:
    """The namespaces, a ServiceAccount allowed to beat Sessions in the watched one (what
    the chart's ClusterRole ``session-heartbeat`` grants, made here so the benchmark does
    not depend on where the manifests live), and a token for it."""
    for namespace in (WATCHED, UNWATCHED):
        namespace_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        await api.expect("POST", "/api/v1/namespaces", namespace_body)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": HEARTBEAT_ROLE},
        "rules": [{"apiGroups": ["xg2g.io"], "resources": ["sessions/heartbeat"],
                   "verbs": ["create"]}],
    }  # fmt: skip
    await api.expect("POST", f"{rbac}/clusterroles", role)
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": CLIENT}}
    await api.expect("POST", f"/api/v1/namespaces/{WATCHED}/serviceaccounts", account)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{CLIENT}-heartbeat"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": HEARTBEAT_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": CLIENT, "namespace": WATCHED}],
    }  # fmt: skip
    await api.expect("POST", f"{rbac}/namespaces/{WATCHED}/rolebindings", binding)
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 7200, "audiences": [DEFAULT_TOKEN_AUDIENCE]},
    }
    answer = await api.expect(
        "POST", f"/api/v1/namespaces/{WATCHED}/serviceaccounts/{CLIENT}/token", request
    )
    return str(answer["status"]["token"])


def _names(stage: Stage, kind: str, count: int) -> list[SessionName]:
    return [SessionName(WATCHED, f"{stage.prefix}-{kind}-{i:05d}") for i in range(count)]


async def _run_phases(plan: Plan, bench: Bench, results: Results) -> None:
    progress = bench.progress
    progress.start("raw sessions", "ready sessions in an unwatched namespace")
    unwatched = [SessionName(UNWATCHED, f"raw-{i:05d}") for i in range(plan.raw_sessions)]
    await seed_unwatched(bench.api, unwatched)
    raw_targets = Rotation(unwatched)
    for c in plan.concurrencies:
        progress.start(f"raw - {c}", f"operator not started: raw status PATCH, c={c}")
        results.raw.append(await raw_ceiling(bench, 0, raw_targets, c, plan.raw_seconds))

    progress.start("operator", "starting the operator")
    bench.operator.spawn()
    await bench.operator.wait_ready(bench.http)

    writers: list[SessionName] = []
    idlers: list[SessionName] = []
    expirers: list[SessionName] = []
    live = 0
    for index, stage in enumerate(plan.stages):
        new_writers = _names(stage, "w", stage.writers)
        new_idlers = _names(stage, "i", stage.idlers)
        duplicates = _names(stage, "d", stage.duplicates)
        new_expirers = _names(stage, "e", stage.expirers)
        live += stage.size
        writers += new_writers
        idlers += new_idlers
        expirers += new_expirers

        population = [(ref, WRITER_LEASE) for ref in (*new_writers, *new_expirers)]
        population += [(ref, IDLER_LEASE) for ref in (*new_idlers, *duplicates)]
        if stage.seeded:
            progress.start(f"populate {index}", f"N={live:,}: seeding sessions")
            added = await populate_seeded(bench, population, live, within=plan.setup_timeout)
        else:
            progress.start(f"populate {index}", f"N={live:,}: creating sessions")
            added = await populate(bench, population, live, within=plan.setup_timeout)
        results.populations.append(added)

        progress.start(f"idle {index}", f"N={live:,}: operator idle")
        results.idle.append((live, await idle_cost(bench, plan.idle_seconds)))

        for c in plan.concurrencies:
            progress.start(f"raw {index} {c}", f"N={live:,}: raw status PATCH, c={c}")
            results.raw.append(await raw_ceiling(bench, live, raw_targets, c, plan.raw_seconds))

        progress.start(f"warm writers {index}", f"N={live:,}: first heartbeat of every writer")
        await warm_up(bench, writers)
        await asyncio.sleep(WRITER_GAP)  # every writer is outside its interval again
        write_targets = Rotation(writers, WRITER_GAP)
        for c in plan.concurrencies:
            progress.start(f"write {index} {c}", f"N={live:,}: heartbeats that write, c={c}")
            results.writes.append(
                await heartbeats(bench, "write", live, write_targets, c, plan.write_seconds)
            )

        progress.start(f"warm pool {index}", f"N={live:,}: first heartbeat of the noop pool")
        pool = idlers[: plan.noop_pool]
        await warm_up(bench, pool)
        noop_targets = Rotation(pool)
        for c in plan.concurrencies:
            progress.start(
                f"noop {index} {c}", f"N={live:,}: heartbeats inside the interval, c={c}"
            )
            results.noops.append(
                await heartbeats(bench, "noop", live, noop_targets, c, plan.noop_seconds)
            )

        progress.start(f"duplicates {index}", f"N={live:,}: duplicate heartbeats")
        results.duplicates.append(
            await duplicate_heartbeats(
                bench, live, duplicates, plan.duplicate_copies, max(plan.concurrencies)
            )
        )

    ceiling = max((run.load.throughput for run in results.raw if run.live == live), default=0.0)
    progress.start("staggered", f"N={live:,}: staggered expiry")
    names = [ref.name for ref in expirers[: plan.staggered_sessions]]
    start = datetime.now(UTC).timestamp() + patch_lead(len(names), ceiling)
    deadlines = staggered(names, datetime.fromtimestamp(start, UTC), plan.staggered_window)
    results.expiries.append(
        await expiry(bench, "staggered", live, WATCHED, deadlines, plan.expiry_grace)
    )
    live -= len(names)

    burst = expirers[plan.staggered_sessions : plan.staggered_sessions + plan.burst_sessions]
    progress.start("burst", f"N={live:,}: {len(burst):,} leases end at once")
    names = [ref.name for ref in burst]
    instant = datetime.now(UTC).timestamp() + patch_lead(len(names), ceiling)
    deadlines = same_instant(names, datetime.fromtimestamp(round(instant), UTC))
    results.expiries.append(
        await expiry(bench, "burst", live, WATCHED, deadlines, plan.expiry_grace)
    )


def _write_json(results_dir: Path, document: dict[str, object]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{stamp}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny numbers")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    chain = ensure_built(toolchain(repo_root=REPO))
    progress = Progress(plan.steps())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xg2g-bench-") as scratch:
        workdir = Path(scratch)
        progress.start("control plane", "starting etcd, kube-apiserver, kube-controller-manager")
        with LocalControlPlane(chain, workdir=workdir / "controlplane", etcd_fsync=True) as plane:
            plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/sessions.xg2g.io")  # fmt: skip
            try:
                results = asyncio.run(measure(plan, plane, workdir, progress))
            except KeyboardInterrupt:
                progress.note("interrupted")
                return 130
    results.seconds = time.monotonic() - started
    results.notes.extend(_notes(plan))
    progress.finish()
    table = render(results)
    document = as_json(results, table) | {"plan": asdict(plan)}
    path = _write_json(args.results_dir, document)
    print(table)
    print(f"\nJSON: {path}")
    return 1 if results.error else 0


def _notes(plan: Plan) -> list[str]:
    first, *rest = plan.stages
    return [
        "N = live Sessions the operator holds (it watches one namespace). c = concurrent "
        "requests of one Python aiohttp client in a closed loop, on the same 2 cores.",
        "Raw ceiling: status merge-PATCHes of lastHeartbeat + leaseExpiresAt (what a "
        "heartbeat writes) with the admin token to ready Sessions in a namespace the "
        "operator does not watch; N = 0 before the operator starts, then with it running.",
        f"The first {first.size:,} sessions are created as users do and made ready by the "
        f"operator; the other {sum(stage.size for stage in rest):,} are seeded (while it "
        "runs) as it leaves a ready session: status from its lifecycle function, state "
        "label, kopf finalizer and annotations.",
        "apiserver columns are deltas of its own apiserver_request_total: writes = "
        "successful mutations of Sessions and Events; calls add refused writes (409/422), "
        "GET/LIST of Sessions and TokenReviews/SubjectAccessReviews (watches excluded).",
        "Expiry lag = time the stopped status is seen on a watch minus leaseExpiresAt, "
        "both on this machine's clock; leases are shortened by a status merge-patch first.",
        "Cost: operator VmRSS (largest sampled) and utime+stime from /proc over the window; "
        "CPU % is of one core. 'bench' is this load generator itself.",
    ]


if __name__ == "__main__":
    sys.exit(main())
