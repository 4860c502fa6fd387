"""``make profile-runtime``: CPU per Session watch event, and per-Session timers' idle cost,
of each Session runtime in :data:`~bench.runtime.consumer.VARIANTS`, in one run.

A local control plane (etcd with fsync) gets N ready Sessions in one namespace, as the
operator leaves them (state label, finalizer, status). Each variant then runs alone in a
fresh process (``bench.runtime.consumer``); once it has seen every Session and is quiet,
this process merge-patches every Session's status K times (what a heartbeat writes, admin
token, 16 at a time) and reads the variant's CPU seconds before and after its handlers
have taken every resulting event; then it meters an idle window. The table goes to stdout,
the same figures as JSON to ``bench/results/<timestamp>-runtime.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf

from bench.context import IDLER_LEASE, SETUP_CONCURRENCY, SessionName
from bench.load import bounded_gather
from bench.population import adopted_body, create_initialised, default_lifecycle
from bench.report import run_head
from bench.runtime.consumer import DIFF_BASE_ANNOTATION, LEASE_NAME, VARIANTS, Variant
from harness import LocalControlPlane, ensure_built, toolchain
from harness.kube import ApiServer
from harness.machine import Machine, describe_machine
from harness.progress import Progress
from harness.table import render_table
from session_operator.config import Settings
from session_operator.k8s.rest import MERGE_PATCH
from session_operator.models import sessions_path
from session_operator.timestamps import format_timestamp

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "bench" / "results"
NAMESPACE = "runtime"
PATCH_CONCURRENCY = 16
QUIET_SECONDS = 2.0
"""A variant is synced once it has seen every Session and handled no event for this long."""
DRAIN_SECONDS = 5.0
"""After the patches, stop waiting for the variant's count when it stands still this long."""


@dataclass
class Mark:
    """What a variant's process reports: CPU seconds so far, events handled, objects seen."""

    cpu: float
    events: int
    seen: int


@dataclass
class Row:
    """One variant's figures."""

    variant: str
    description: str
    events: int = 0
    event_cpu_seconds: float = 0.0
    event_wall_seconds: float = 0.0
    idle_runs: int = 0
    """Handler runs in the idle window: timer runs (no watch event happens then)."""
    idle_cpu_seconds: float = 0.0
    idle_wall_seconds: float = 0.0
    error: str = ""

    @property
    def ms_per_event(self) -> float | None:
        """CPU milliseconds per watch event handled (``None``: none measured)."""
        return 1000 * self.event_cpu_seconds / self.events if self.events else None

    @property
    def idle_percent(self) -> float:
        """CPU in the idle window, in % of one core."""
        wall = self.idle_wall_seconds
        return 100 * self.idle_cpu_seconds / wall if wall else 0.0


@dataclass
class Run:
    """The whole run (``bench.report.RunSummary``)."""

    started: str
    mode: str
    machine: Machine
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""


class Consumer:
    """A variant's process: started on *variant*, asked for :class:`Mark` s, stopped."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, variant: Variant, kubeconfig: Path, log: Path, interval: float
    ) -> AsyncIterator[Consumer]:
        """The variant's process while the block runs, with its stderr in *log*."""
        env = os.environ | {"KUBECONFIG": str(kubeconfig), "RUNTIME_TIMER_INTERVAL": str(interval)}
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.runtime.consumer", variant.name, NAMESPACE,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                cwd=REPO, env=env,
            )  # fmt: skip
            try:
                yield cls(process)
            finally:
                if process.returncode is None and process.stdin is not None:
                    process.stdin.write(b"stop\n")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 15)
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def mark(self) -> Mark:
        """The variant's CPU seconds, events and objects seen, now."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(b"mark\n")
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"the variant's process ended ({self._process.returncode})")
        return Mark(**json.loads(line))

    async def settled(self, *, seen: int = 0, events: int = 0, quiet: float = 0.0,
                      within: float) -> Mark:  # fmt: skip
        """Wait until it has seen *seen* objects and handled *events* events in all, then
        nothing new for *quiet* seconds; or until it stops short of *events* for
        :data:`DRAIN_SECONDS`."""
        deadline = time.monotonic() + within
        last, still_since = await self.mark(), time.monotonic()
        while True:
            still = time.monotonic() - still_since
            if last.seen >= seen and last.events >= events and still >= quiet:
                return last
            if last.events < events and still >= DRAIN_SECONDS:
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"saw {last.seen:,} of {seen:,} objects in {within:.0f} s")
            await asyncio.sleep(0.2)
            mark = await self.mark()
            if mark.events != last.events:
                still_since = time.monotonic()
            last = mark


async def patch_all(api: ApiServer, refs: list[SessionName], rounds: int) -> int:
    """Merge-patch each Session's status *rounds* times, round-robin; the patches that took."""
    ttl = timedelta(seconds=IDLER_LEASE["ttlSeconds"])
    taken = 0

    async def patch(ref: SessionName) -> None:
        nonlocal taken
        now = datetime.now(UTC)
        status = {"lastHeartbeat": format_timestamp(now),
                  "leaseExpiresAt": format_timestamp(now + ttl)}  # fmt: skip
        path = sessions_path(ref.namespace, ref.name, "status")
        if 200 <= await api.send("PATCH", path, {"status": status}, MERGE_PATCH) < 300:
            taken += 1

    await bounded_gather(refs * rounds, patch, PATCH_CONCURRENCY)
    return taken


async def first_writes_done(api: ApiServer, variant: Variant, sessions: int, within: float) -> None:
    """Wait until kopf has written to every Session what it writes at first sight (not what
    is measured): its diff-base annotation for a change handler, its finalizer for a timer."""
    finalizer = kopf.OperatorSettings().persistence.finalizer

    def written(metadata: dict[str, Any]) -> bool:
        if variant.on_update:
            return DIFF_BASE_ANNOTATION in metadata.get("annotations", {})
        return finalizer in metadata.get("finalizers", [])

    deadline = time.monotonic() + within
    while True:
        items = (await api.expect("GET", sessions_path(NAMESPACE)))["items"]
        if (done := sum(written(item["metadata"]) for item in items)) >= sessions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"kopf wrote to {done:,} of {sessions:,} Sessions in {within} s")
        await asyncio.sleep(2)


async def measure_variant(
    variant: Variant, api: ApiServer, plane: LocalControlPlane, args: argparse.Namespace,
    refs: list[SessionName], progress: Progress, logs: Path,
) -> Row:  # fmt: skip
    """Sync *variant*, feed it the patches (if it takes events), meter an idle window."""
    row = Row(variant.name, variant.description)
    log = logs / f"{variant.name}.log"
    async with Consumer.running(variant, plane.kubeconfig, log, args.timer_interval) as consumer:
        objects = 1 if variant.timers == "one" else len(refs)
        progress.update(0.1, f"{variant.name}: listing {objects:,} objects")
        quiet = 0.0 if variant.timers else QUIET_SECONDS
        within = 120 + len(refs) / 20
        await consumer.settled(seen=objects, quiet=quiet, within=within)
        if variant.on_update or variant.timers == "per-session":
            await first_writes_done(api, variant, len(refs), within)
            await consumer.settled(quiet=quiet, within=within)
        if variant.timers:  # no handler counts the events of kopf's writes: let them pass
            await asyncio.sleep(args.timer_interval)
        if variant.takes_events:
            progress.update(0.3, f"{variant.name}: {len(refs) * args.rounds:,} status patches")
            before, started = await consumer.mark(), time.monotonic()
            sent = await patch_all(api, refs, args.rounds)
            after = await consumer.settled(events=before.events + sent, within=120)
            row.event_wall_seconds = time.monotonic() - started
            row.events = after.events - before.events
            row.event_cpu_seconds = after.cpu - before.cpu
            if row.events < sent:
                row.error = f"handled {row.events:,} of {sent:,} events"
        progress.update(0.7, f"{variant.name}: idle {args.idle:.0f} s")
        before, started = await consumer.mark(), time.monotonic()
        await asyncio.sleep(args.idle)
        after = await consumer.mark()
        row.idle_runs = after.events - before.events
        row.idle_cpu_seconds = after.cpu - before.cpu
        row.idle_wall_seconds = time.monotonic() - started
    return row


async def measure(
    args: argparse.Namespace, plane: LocalControlPlane, progress: Progress, logs: Path
) -> Run:
    """Create the Sessions and the Lease, then measure every variant in turn."""
    async with ApiServer(plane.server, plane.admin_token, plane.ca_file) as api:
        kubernetes = str((await api.expect("GET", "/version"))["gitVersion"])
        async with api.http.get(
            plane.etcd_url + "/version", ssl=plane.etcd_client_context()
        ) as response:
            etcd = str((await response.json())["etcdserver"])
        run = Run(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            mode=f"{args.sessions:,} sessions x {args.rounds} patches",
            machine=describe_machine(kubernetes, etcd),
        )
        progress.start("sessions", f"creating {args.sessions:,} ready Sessions")
        await api.expect("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        lease = {"metadata": {"name": LEASE_NAME}, "spec": {"holderIdentity": "nobody"}}
        await api.expect("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases",
                         lease)  # fmt: skip
        refs = [SessionName(NAMESPACE, f"s-{i:05d}") for i in range(args.sessions)]
        lifecycle = default_lifecycle()

        async def create(ref: SessionName) -> None:
            await create_initialised(api, adopted_body(ref, IDLER_LEASE), lifecycle)

        def created(done: int) -> None:
            progress.update(done / len(refs), f"creating Sessions {done:,}/{len(refs):,}")

        await bounded_gather(refs, create, SETUP_CONCURRENCY, created)
        for variant in VARIANTS:
            progress.start(variant.name)
            try:
                run.rows.append(await measure_variant(variant, api, plane, args, refs, progress,
                                                      logs))  # fmt: skip
            except Exception as error:  # keep what the other variants measured
                reason = f"{type(error).__name__}: {error}"
                run.rows.append(Row(variant.name, variant.description, error=reason))
                progress.note(
                    f"{variant.name} failed: {reason}; its log: {logs / variant.name}.log"
                )
        return run


def render(run: Run, args: argparse.Namespace) -> str:
    """The table, under a line naming the machine."""
    own = next((row.ms_per_event for row in run.rows if row.variant == "own"), None)
    rows = []
    for row in run.rows:
        per_event = row.ms_per_event
        ratio = f"{per_event / own:.1f}x" if per_event is not None and own else "-"
        rows.append([
            row.variant,
            f"{row.events:,}" if per_event is not None else "-",
            f"{per_event:.3f}" if per_event is not None else "-",
            ratio,
            f"{row.idle_runs:,}",
            f"{row.idle_percent:.1f}",
            row.error,
        ])  # fmt: skip
    headers = ["runtime", "watch events", "CPU ms/event", "vs own", "idle: timer runs",
               "idle: CPU % of a core", "error"]  # fmt: skip
    head = (f"{run.machine.describe()}\n{run.mode}, idle window {args.idle:.0f} s, "
            f"timer interval {args.timer_interval:.0f} s\n\n")  # fmt: skip
    return head + render_table(rows, headers)


def notes() -> list[str]:
    """What the reader of the JSON needs to know."""
    return [
        "Each variant runs alone in a fresh Python process; CPU is its time.process_time "
        "(all threads) from before the first patch until it has handled the last event, "
        "divided by the events its handlers took. kopf: defaults, but no Events posted.",
        "Every runtime ends in the operator's SessionStore: kopf's @on.event handler "
        "decodes the object (Session.from_body) as the operator's own watch does.",
        "Variants run in the table's order on the same Sessions: kopf-update adds kopf's "
        "last-handled-configuration annotation, kopf-timers kopf's finalizer, both kept; "
        "own-again measures the own watch again on those bodies.",
        "Idle: no patches; the timer variants' handler only counts its runs.",
    ]


@contextlib.contextmanager
def control_plane(progress: Progress) -> Iterator[tuple[LocalControlPlane, Path]]:
    """A local control plane with the CRD, and a scratch directory for the variants' logs."""
    chain = ensure_built(toolchain(repo_root=REPO))
    with tempfile.TemporaryDirectory(prefix="xg2g-runtime-") as scratch:
        progress.start("control plane", "starting etcd, kube-apiserver, kube-controller-manager")
        with LocalControlPlane(chain, workdir=Path(scratch) / "cp", etcd_fsync=True) as plane:
            plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/sessions.xg2g.io")  # fmt: skip
            yield plane, Path(scratch)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.runtime``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000, help="ready Sessions (N)")
    parser.add_argument("--rounds", type=int, default=1, help="status patches per Session (K)")
    parser.add_argument(
        "--idle", type=float, default=20.0, help="seconds of each idle window (2 timer intervals)"
    )
    parser.add_argument(
        "--timer-interval",
        type=float,
        default=Settings().expiry_check_interval.total_seconds(),
        help="the kopf timers' interval (default: the operator's expiryCheckInterval)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    steps = {"control plane": 8.0, "sessions": args.sessions / 150}
    steps |= {v.name: 10 + args.idle + args.sessions * args.rounds / 300 for v in VARIANTS}
    progress = Progress(steps)
    started = time.monotonic()
    with control_plane(progress) as (plane, scratch):
        try:
            run = asyncio.run(measure(args, plane, progress, scratch))
        except KeyboardInterrupt:
            progress.note("interrupted")
            return 130
    run.seconds = time.monotonic() - started
    run.notes = notes()
    run.error = "; ".join(f"{row.variant}: {row.error}" for row in run.rows if row.error)
    progress.finish()
    table = render(run, args)
    document = run_head(run, table) | {
        "plan": {key: str(value) for key, value in vars(args).items()},
        "rows": [asdict(row) | {"ms_per_event": row.ms_per_event,
                                "idle_core_percent": row.idle_percent} for row in run.rows],
    }  # fmt: skip
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-runtime.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(table)
    print(f"\nJSON: {path}")
    return 1 if run.error else 0
