"""The field benchmark's pure parts: its clients' addresses, the Service they reach the
replicas by, its steps, and the verdicts it computes."""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import math
import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bench.cost import ProcessCost
from bench.field.apiserver_alone import AlonePlan
from bench.field.clients import BeatStats, Endpoints, Replica, source_address
from bench.field.measure import Evidence, OpenLoop, Window, arrivals, even_arrivals
from bench.field.phases import Failover, PodEventCost, SustainStep
from bench.field.plan import FieldPlan, beat_rate
from bench.field.profile import busiest
from bench.field.report import FieldResults, table_rows
from bench.load import Latency, LoadResult
from bench.run import main, parse_step_sizes
from harness.kube import ApiCalls, RequestCounts, histogram_quantile, prometheus_samples
from harness.machine import Machine
from session_operator.outage_rule import OutageWindow

NO_CALLS = ApiCalls(0, 0, 0, 0, 0, 0)


def test_every_client_has_an_address_of_its_own_on_loopback() -> None:
    addresses = [source_address(index) for index in range(70_000)]
    assert len(set(addresses)) == len(addresses)
    for address in addresses[::997]:
        parsed = ipaddress.ip_address(address)
        assert parsed.is_loopback
        assert not address.endswith((".0", ".255"))


def test_new_connections_go_round_the_ready_replicas_only() -> None:
    a, b = Replica("a", "https://a", "http://a"), Replica("b", "https://b", "http://b")
    endpoints = Endpoints([a, b])
    assert {endpoints.pick(), endpoints.pick()} == {a, b}
    endpoints.mark_ready([b])  # what follow() does when a's /readyz fails
    assert [endpoints.pick(), endpoints.pick()] == [b, b]
    endpoints.mark_ready([])
    assert endpoints.pick() is None


def test_steps_are_shares_of_the_goal_unless_sizes_are_given() -> None:
    assert FieldPlan.full().steps(1_000) == [250, 500, 750, 1_000, 1_250]
    assert FieldPlan.quick().steps(1_000) == [40, 80]


def window(seconds: float, cpu: dict[str, float], beats: BeatStats | None = None) -> Window:
    cost = {name: ProcessCost(used, seconds, 0, 0) for name, used in cpu.items()}
    return Window(seconds, NO_CALLS, cost, {}, beats or BeatStats())


def test_pod_event_cost_is_the_extra_cpu_per_hundred_events_per_second() -> None:
    quiet = window(20, {"replica-a": 0.2})
    churning = window(20, {"replica-a": 0.6})  # 1 % of a core more
    cost = PodEventCost(quiet, churning, events=4_000)  # 200 events/s
    assert round(cost.core_percent_per_100("replica-a"), 6) == 1.0
    assert cost.core_percent_per_100("replica-b") != cost.core_percent_per_100("replica-b")


def sustained_step(
    p99_seconds: float, wrongful: int, raw_p99_ms: float, unheld: int = 0
) -> SustainStep:
    beats = BeatStats()
    for _ in range(98):
        beats.take("replica-a", 0.010, 200)
    for _ in range(2):  # the nearest-rank p99 of 100 beats is the second slowest
        beats.take("replica-a", p99_seconds, 200)
    return SustainStep(100, window(10, {}, beats), raw_p99_ms, wrongful, 50.0, unheld=unheld)


def test_a_step_is_sustained_only_without_wrongful_expiries_and_within_twice_raw() -> None:
    assert sustained_step(0.010, wrongful=0, raw_p99_ms=5.0).sustained
    assert not sustained_step(0.010, wrongful=1, raw_p99_ms=5.0).sustained
    assert not sustained_step(0.011, wrongful=0, raw_p99_ms=5.0).sustained


def test_a_step_whose_sessions_the_leader_did_not_all_hold_live_is_not_sustained() -> None:
    assert not sustained_step(0.010, wrongful=0, raw_p99_ms=5.0, unheld=1).sustained


def results_with_steps(*steps: SustainStep) -> FieldResults:
    machine = Machine(2, 24.0, "cpu", "linux", "3.11", "v1", "3.6", "1.45", (0.0, 0.0, 0.0))
    results = FieldResults(machine, "field", "now", steps=list(steps))
    results.ceiling = LoadResult(32, 10.0, Latency.of([0.01]), Counter({200: 4_000}))  # 400/s
    return results


def sustain_rows(results: FieldResults) -> dict[str, list[str]]:
    return {row[1]: row for row in table_rows(results) if row[0] == "sustain"}


def test_with_no_step_sustained_the_sessions_sustained_are_fewer_than_the_smallest_tried() -> None:
    rows = sustain_rows(results_with_steps(sustained_step(0.5, wrongful=0, raw_p99_ms=5.0)))
    largest = rows["largest number of sessions sustained at 60 s / 5 s"]
    assert largest[2] == "< 100"
    assert largest[-1] == "missed: no step sustained; the smallest was 6% of the goal"
    assert rows["must-write beats at the largest step sustained"][2] == "< 100"


def test_the_sessions_sustained_are_the_largest_step_sustained() -> None:
    rows = sustain_rows(results_with_steps(sustained_step(0.010, wrongful=0, raw_p99_ms=5.0)))
    largest = rows["largest number of sessions sustained at 60 s / 5 s"]
    assert largest[2] == "100"
    assert largest[-1] == "missed: 6% of the goal"


# --- the replicas' profile at a restart ------------------------------------------------------


def test_busiest_counts_a_function_once_per_stack_and_shares_of_all_samples() -> None:
    collapsed = "\n".join([
        "<module> (runpy.py:1);run (session_cache.py:90);loads (json/__init__.py:346) 6",
        "<module> (runpy.py:1);run (session_cache.py:90);run (session_cache.py:91) 2",
        "<module> (runpy.py:1);handle (web_protocol.py:500) 2",
        "not a stack line",
    ])  # fmt: skip

    rows = busiest(collapsed)

    assert rows[0] == (1.0, 10, "<module> (runpy.py)")
    # Recursion (run calling run) counts its stack once.
    assert rows[1] == (0.8, 8, "run (session_cache.py)")
    assert (0.6, 6, "loads (__init__.py)") in rows
    assert (0.2, 2, "handle (web_protocol.py)") in rows
    assert len(busiest(collapsed, count=2)) == 2


def test_a_quick_field_plan_can_fail_over_at_scale_and_stays_tiny_otherwise() -> None:
    quick, at_scale = FieldPlan.quick(), FieldPlan.quick(50_000)
    assert quick.failover_sessions == 400
    assert at_scale.failover_sessions == 50_000
    assert at_scale.step_sizes == quick.step_sizes
    assert (at_scale.due_sessions, at_scale.due_spread) == (300, 30.0)
    assert "50,000" in at_scale.mode


def test_only_the_metric_asked_for_is_read_from_an_exposition() -> None:
    text = (
        "# HELP apiserver_request_total Counter of apiserver requests.\n"
        "# TYPE apiserver_request_total counter\n"
        'apiserver_request_total{verb="PATCH",code="200"} 7\n'
        'apiserver_request_total_other{verb="GET"} 9\n'
        "# TYPE apiserver_request_duration_seconds histogram\n"
        'apiserver_request_duration_seconds_bucket{le="0.1"} 3\n'
    )
    assert prometheus_samples(text, "apiserver_request_total") == [
        ({"verb": "PATCH", "code": "200"}, 7.0)
    ]
    assert prometheus_samples(text, "apiserver_request_duration_seconds_bucket") == [
        ({"le": "0.1"}, 3.0)
    ]


def test_a_histogram_quantile_is_interpolated_within_its_bucket() -> None:
    buckets = {0.005: 10.0, 0.025: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert math.isclose(histogram_quantile(0.99, buckets), 0.025 + 0.075 * 0.9)
    assert math.isclose(histogram_quantile(0.05, buckets), 0.0025)
    assert histogram_quantile(0.99, {0.1: 50.0, math.inf: 100.0}) == 0.1
    assert math.isnan(histogram_quantile(0.99, {0.1: 0.0, math.inf: 0.0}))
    assert math.isnan(histogram_quantile(0.99, {}))


def _durations(fast: int, slow: int) -> str:
    """An exposition with *fast* status patches under 25 ms and *slow* ones under 1 s, and
    Pod patches that must not count."""
    lines = []
    for bound, count in (("0.025", fast), ("1", fast + slow), ("+Inf", fast + slow)):
        labels = 'verb="PATCH",resource="sessions",subresource="status",component="apiserver"'
        lines.append(f'apiserver_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}')
        pods = 'verb="PATCH",resource="pods",subresource="status",component="apiserver"'
        lines.append(f'apiserver_request_duration_seconds_bucket{{{pods},le="{bound}"}} 1000')
    return "\n".join(lines) + "\n"


def test_the_apiserver_times_only_the_session_status_patches_served_in_between() -> None:
    before = RequestCounts.parse(_durations(fast=500, slow=0))
    after = RequestCounts.parse(_durations(fast=599, slow=1))
    assert before.status_patch_buckets == {0.025: 500.0, 1.0: 500.0, math.inf: 500.0}
    # 100 served since: 99 under 25 ms, one under 1 s; the p99 is the 99th, at 25 ms.
    assert math.isclose(after.status_patch_p99_ms(before), 25.0)
    assert math.isnan(after.status_patch_p99_ms(after))


def test_raw_requests_arrive_as_the_beats_of_many_timers_do() -> None:
    times = arrivals(rate=145.0, seconds=160.0, chance=random.Random(7))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert times == sorted(times)
    assert times[0] > 0
    assert times[-1] < 160.0
    assert abs(len(times) - 145 * 160) < 4 * math.sqrt(145 * 160)
    # Exponential gaps: their spread is their mean (evenly spaced ones have none).
    assert math.isclose(statistics.mean(gaps), 1 / 145, rel_tol=0.03)
    assert math.isclose(statistics.stdev(gaps), statistics.mean(gaps), rel_tol=0.05)


def test_one_timer_sends_evenly_and_a_run_is_cut_into_equal_parts() -> None:
    assert even_arrivals(rate=4.0, seconds=1.0) == [0.0, 0.25, 0.5, 0.75]
    samples = tuple((at / 10, 0.001 * (1 + at // 50)) for at in range(100))  # 10 s, 2 halves
    loop = OpenLoop(
        10.0, 10.0, Latency.of([taken for _, taken in samples]), Counter(), math.nan, samples
    )
    assert loop.p99_ms_by_part(2) == [1.0, 2.0]


def test_the_apiserver_alone_runs_at_the_field_tiers_first_step() -> None:
    plan = AlonePlan.full()
    assert plan.rate == beat_rate(758)
    assert round(plan.rate) == 144
    assert plan.window == FieldPlan.full().window


def test_steps_are_given_as_client_counts_with_the_field_tier_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_step_sizes("366,1830") == (366, 1830)
    for wrong in ("", "366,x", "0", "-5"):
        with pytest.raises(argparse.ArgumentTypeError, match="client counts"):
            parse_step_sizes(wrong)
    with pytest.raises(SystemExit) as exited:
        main(["--steps", "1830"])
    assert exited.value.code == 2
    assert "--steps go with --field" in capsys.readouterr().err


def failover_with(observed: int, lag_after: list[float]) -> Failover:
    return Failover(
        sessions=10_000,
        killed="replica-a",
        takeover_seconds=13.0,
        lag_during=[5.0] * (observed - len(lag_after)),
        lag_by_due=[(float(index), lag) for index, lag in enumerate(lag_after)],
        operator_lag_after=lag_after,
        graced=0,
        due=300,
        observed=observed,
        wrongful=0,
        beats=BeatStats(),
    )


def test_a_failover_whose_due_leases_were_not_all_seen_stopped_is_not_met() -> None:
    assert failover_with(300, [0.5] * 100).met(15.0, 2000.0)
    assert not failover_with(300, [2.5] * 100).met(15.0, 2000.0)
    # An outage that kept every due lease (lease rule 8) measured no lag at all.
    assert not failover_with(0, []).met(15.0, 2000.0)
    assert not failover_with(299, [0.5] * 100).met(15.0, 2000.0)


def test_the_outage_seconds_are_those_of_the_window_the_record_covers() -> None:
    start = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    evidence = Evidence(outages=(
        OutageWindow(start, start + timedelta(seconds=10)),
        OutageWindow(start + timedelta(seconds=20), start + timedelta(seconds=30), ongoing=True),
    ))  # fmt: skip
    since = (start + timedelta(seconds=5)).timestamp()
    assert evidence.outage_seconds(since, since + 20) == 5 + 5
    assert evidence.outage_seconds(since + 30, since + 40) == 0
    assert evidence.as_dict()["outages"] == [str(window) for window in evidence.outages]
