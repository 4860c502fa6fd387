"""``make bench BENCH_ARGS=--quick`` (and ``--field --quick``) runs end to end: every phase, one
table, one JSON file.

No figure is judged here (the machine is shared, numbers vary); the run must finish in time,
exit 0, and report every phase with the machine it ran on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICK_RUN_BUDGET = 240.0


def test_quick_benchmark_prints_one_table_and_writes_its_json(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_BUDGET,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1, written
    report = json.loads(written[0].read_text())
    assert report["mode"] == "quick"
    assert report["table"] in run.stdout
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["kubernetes"].startswith("v")
    for phase in (
        "raw_ceiling",
        "heartbeats_must_write",
        "heartbeats_inside_interval",
        "duplicate_heartbeats",
        "write_variants",
        "expiry",
        "idle",
    ):
        assert report[phase], f"no {phase} figures"
    for row in (
        "1 raw",
        "1 write",
        "2a heartbeat",
        "2b heartbeat",
        "2c duplicates",
        "3 expiry",
        "4 cost",
    ):
        assert f"| {row}" in report["table"], row
    # Every lease the benchmark shortened was seen to end, for the reason it ended.
    for expiry in report["expiry"]:
        assert expiry["observed"] == expiry["sessions"], expiry
        assert expiry["stop_reasons"] == {"LEASE_EXPIRED": expiry["sessions"]}, expiry
    # Expiry ran with and without heartbeats beside it; a standby replica was metered.
    assert [run["background_heartbeats"] is not None for run in report["expiry"]].count(True) == 2
    assert all("standby" in idle["cost"] for idle in report["idle"]), report["idle"]
    # Heartbeats that must write wrote once each; beats inside the interval wrote nothing.
    for run_ in report["heartbeats_must_write"]:
        assert run_["apiserver"]["status_writes"] == run_["ok"], run_
    for run_ in report["heartbeats_inside_interval"]:
        assert run_["apiserver"]["writes"] == 0, run_


FIELD_RUN_BUDGET = 420.0


def test_quick_field_tier_runs_every_phase_with_distinct_tokens(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--field", "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=FIELD_RUN_BUDGET,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    written = list(tmp_path.glob("*-field.json"))
    assert len(written) == 1, written
    report = json.loads(written[0].read_text())
    assert report["mode"] == "field quick"
    assert report["table"] in run.stdout
    kept = sorted(log.name.split("-", 1)[1] for log in tmp_path.glob("*-replica-*.log"))
    assert kept == ["replica-a.log", "replica-b.log"], kept  # the replicas' logs, kept
    for row in ("raw", "pod events", "noop", "expiry", "sustain", "failover", "restart"):
        assert f"| {row}" in report["table"], row
    # Each client's token was its own: after the restart, with the auth caches cold, the
    # replicas asked the apiserver about many tokens (a step's window, after its settling
    # time, may see one or none).
    cold = report["restart"]["cold"]["apiserver"]
    assert cold["token_reviews"] > 1, cold
    first_step = report["steps"][0]
    # Both replicas served beats; nobody's session was stopped under its beating client.
    assert set(first_step["by_replica"]) == {"replica-a", "replica-b"}, first_step["by_replica"]
    assert all(step["wrongful"] == 0 for step in report["steps"]), report["steps"]
    # The apiserver timed the steps' status patches and the raw ones: the tail is placed.
    assert first_step["apiserver_patch_p99_ms"] > 0, first_step
    assert all(raw["apiserver_p99_ms"] > 0 for raw in report["raw_at_rate"].values())
    # Every lease set to end ended, with its Pod deleted; the killed leader was replaced.
    expiry = report["expiry_with_pods"]
    assert expiry["observed"] == expiry["sessions"]
    assert expiry["apiserver"]["pod_writes"] == expiry["sessions"]
    failover = report["failover"]
    assert failover["observed"] == failover["due"]
    assert failover["wrongful"] == 0
    assert set(report["restart"]["ready_seconds"]) == {"replica-a", "replica-b"}
    assert report["restart"]["wrongful"] == 0


def test_the_apiserver_alone_runs_its_three_loads(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--apiserver-alone", "--quick",
         "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=FIELD_RUN_BUDGET,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]

    (written,) = tmp_path.glob("*-apiserver-alone.json")
    report = json.loads(written.read_text())
    assert report["table"] in run.stdout
    assert len(report["runs"]) == 3
    for load in report["runs"]:
        # Every patch landed: the heartbeat's guarded ones too, their tests held.
        assert set(load["statuses"]) == {"200"}, load
        assert load["requests"] > 0
        assert load["apiserver_p99_ms"] > 0, load
        assert len(load["p99_ms_by_fifth"]) == 5
