"""``make chaos`` and ``make soak``: inject faults into a local cluster, judge the invariants.

    python -m chaos [--faults leader-kill,apiserver-stall] [--sessions 24] [--seed 1]
    python -m chaos --soak 10m

One local control plane and two operator replicas serve the whole run; the faults follow
each other in the order given. Progress goes to stderr, the table to stdout (and as JSON
with ``--json``); the exit status is 0 only if every invariant held. Logs of every
process stay in a temporary directory, kept (and named) when something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from chaos.faults import FAULTS, FaultResult, run_fault
from chaos.report import as_json, render
from chaos.soak import SoakResult, soak
from chaos.world import OperatorSettings, World
from harness.machine import Machine, describe_machine
from harness.progress import Progress
from session_operator.config import parse_duration

SECONDS_PER_FAULT = {
    "leader-kill": 150.0,
    "apiserver-restart": 90.0,
    "etcd-restart": 90.0,
    "apiserver-stall": 120.0,
    "conflicting-burst": 90.0,
}


async def run(
    faults: list[str], sessions: int, soak_seconds: float | None, seed: int, workdir: Path
) -> tuple[Machine, list[FaultResult], SoakResult | None]:
    """Start the world, run each fault, then the soak; the results."""
    plan = {"start": 15.0, **{f: SECONDS_PER_FAULT[f] for f in faults}}
    if soak_seconds:
        plan["soak"] = soak_seconds + 40
    progress = Progress(plan)
    rng = random.Random(seed)
    retention = "30s" if soak_seconds else "24h"
    progress.start("start", "starting the control plane and two operator replicas")
    async with World(workdir, OperatorSettings(retention=retention)) as world:
        kubernetes = (await world.api.expect("GET", "/version"))["gitVersion"]
        plane = world.control_plane
        async with world.http.get(
            plane.etcd_url + "/version", ssl=plane.etcd_client_context()
        ) as response:
            etcd = (await response.json())["etcdserver"]
        machine = describe_machine(str(kubernetes), str(etcd))
        results = []
        for fault in faults:
            progress.start(fault, f"fault: {fault}")
            results.append(await run_fault(world, fault, sessions, rng))
            if not results[-1].verdict.passed:
                progress.note(f"{fault}: invariants broken")
        soaked = None
        if soak_seconds:
            progress.start("soak", f"soak for {soak_seconds / 60:.0f} min")
            soaked = await soak(world, soak_seconds, rng, lambda share: progress.update(share))
    progress.finish()
    return machine, results, soaked


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m chaos``; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated faults to inject, in order (default: all of {', '.join(FAULTS)})",
    )
    parser.add_argument("--sessions", type=int, default=24, help="sessions per fault")
    parser.add_argument("--soak", metavar="DURATION", help="run only the soak, this long (10m)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (intents, kill points)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    faults = [] if args.soak else [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    soak_seconds = parse_duration(args.soak).total_seconds() if args.soak else None

    workdir = Path(tempfile.mkdtemp(prefix="xg2g-chaos-"))
    machine, results, soaked = asyncio.run(
        run(faults, args.sessions, soak_seconds, args.seed, workdir)
    )
    print(render(machine, results, soaked))
    if args.json:
        args.json.write_text(json.dumps(as_json(machine, results, soaked), indent=2))
    passed = all(r.verdict.passed for r in results) and (soaked is None or soaked.passed)
    if passed:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"\nlogs of every process kept in {workdir}", file=sys.stderr)
    return 1
