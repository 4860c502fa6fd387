"""The field benchmark's pure parts: its clients' addresses, the Service they reach the
replicas by, its steps, and the verdicts it computes."""

from __future__ import annotations

import ipaddress

from bench.cost import ProcessCost
from bench.field.clients import BeatStats, Endpoints, Replica, source_address
from bench.field.measure import Window
from bench.field.phases import PodEventCost, SustainStep
from bench.field.plan import FieldPlan
from bench.field.profile import busiest
from harness.kube import ApiCalls, prometheus_samples

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
    assert FieldPlan.full().steps(1_000) == [500, 750, 1_000, 1_250]
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


def sustained_step(p99_seconds: float, wrongful: int, raw_p99_ms: float) -> SustainStep:
    beats = BeatStats()
    for _ in range(98):
        beats.take("replica-a", 0.010, 200)
    for _ in range(2):  # the nearest-rank p99 of 100 beats is the second slowest
        beats.take("replica-a", p99_seconds, 200)
    return SustainStep(100, window(10, {}, beats), raw_p99_ms, wrongful, 50.0)


def test_a_step_is_sustained_only_without_wrongful_expiries_and_within_twice_raw() -> None:
    assert sustained_step(0.010, wrongful=0, raw_p99_ms=5.0).sustained
    assert not sustained_step(0.010, wrongful=1, raw_p99_ms=5.0).sustained
    assert not sustained_step(0.011, wrongful=0, raw_p99_ms=5.0).sustained


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
