"""The chart's monitoring parts: the PrometheusRule's alerts, checked and unit-tested by the
real promtool (``tests/unit/monitoring/alerts-test.yaml`` holds a case where each alert
fires and one where it does not), the Grafana dashboard's ConfigMap, and each part off by
default (docs/operations.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.binaries import ensure_tool, go_tool
from tests.unit.test_chart_render import (
    CHART,
    NAMESPACE,
    RELEASE,
    only,
    refusal,
    render,
    run_helm,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ALERTS_TEST = Path(__file__).parent / "monitoring" / "alerts-test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
MONITORING_ON = ("metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true")
ALERTS = [
    "SessionOperatorNoLeader",
    "SessionOperatorWatchStalled",
    "SessionOperatorExpiryLagHigh",
    "SessionOperatorHeartbeatErrors",
    "SessionOperatorSessionsStuckStarting",
    "SessionOperatorAuthRefused",
    "SessionOperatorWebhookFailing",
    "SessionOperatorWebhookRefusing",
]
WEBHOOK_ALERTS = {"SessionOperatorWebhookFailing", "SessionOperatorWebhookRefusing"}
PANEL_TITLES = {
    "Sessions by state",
    "Heartbeats by outcome",
    "Expiry lag",
    "Leader",
    "Work queue depth",
    "Auth reviews: heartbeats refused",
    "Leases expired by state",
    "Sessions expiring soon",
    "Holds by change",
}
"""The panels the dashboard must have, among others."""
COMPARISON = re.compile(r"^\s*(<|>|<=|>=|==|!=)\s*\S+\s*$")
"""The last line of every alert's expression: its comparison with the threshold."""


@pytest.fixture(scope="module")
def helm() -> Path:
    """The helm binary, built into the binary cache on first use."""
    return ensure_tool(go_tool("helm", REPO), REPO).binary


@pytest.fixture(scope="module")
def promtool() -> Path:
    """promtool, built with prometheus (``hack/tools/prometheus``) by ``make prepare``."""
    tool = ensure_tool(go_tool("prometheus", REPO), REPO)
    return tool.directory / "promtool"


def render_values(helm: Path, values: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    """The chart's objects for release slo in namespace ops, with the values file *values*
    (``--set`` gives every number as a string)."""
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    argv = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(path)]
    result = run_helm(helm, *argv)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rules_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rule of the chart's PrometheusRule."""
    groups = only(objects, "PrometheusRule")["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def write_rules_file(objects: list[dict[str, Any]], directory: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file in *directory*."""
    path = directory / "rules.yaml"
    groups = only(objects, "PrometheusRule")["spec"]["groups"]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def run_promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def dashboard_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The dashboard in the chart's ConfigMap."""
    config_map = only(objects, "ConfigMap", f"{RELEASE}-session-lease-operator-dashboard")
    dashboard: dict[str, Any] = json.loads(config_map["data"]["session-lease-operator.json"])
    return dashboard


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_monitoring_parts_are_off_by_default(helm: Path) -> None:
    objects = render(helm)
    assert not [o for o in objects if o["kind"] in ("PrometheusRule", "ServiceMonitor")]
    assert not [o for o in objects if "grafana_dashboard" in o["metadata"].get("labels", {})]


def test_the_rule_has_every_alert_with_a_severity_and_a_runbook_section(helm: Path) -> None:
    objects = render(helm, *MONITORING_ON, "metrics.prometheusRule.labels.release=prom")
    rule = only(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = rules_of(objects)
    assert [alert["alert"] for alert in alerts] == ALERTS
    headings = re.findall(r"^### (\S+)$", OPERATIONS.read_text(), re.M)
    assert headings == ALERTS
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical")
        anchor = alert["alert"].lower()
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{anchor}"
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]
        # tests/e2e/test_monitoring.py evaluates what stands before this line.
        assert COMPARISON.match(alert["expr"].splitlines()[-1]), alert["expr"]


def test_operator_alerts_select_the_release_scraped_by_its_service_monitor(helm: Path) -> None:
    objects = render(helm, *MONITORING_ON, "metrics.serviceMonitor.enabled=true")
    service = only(objects, "Service", f"{RELEASE}-session-lease-operator-metrics")
    assert service["metadata"]["namespace"] == NAMESPACE
    # A ServiceMonitor's targets get job=<Service name> and namespace=<its namespace>.
    expected = f'job="{service["metadata"]["name"]}", namespace="{NAMESPACE}"'
    for alert in rules_of(objects):
        if alert["alert"] not in WEBHOOK_ALERTS:
            assert expected in alert["expr"], alert["alert"]


def test_selector_thresholds_and_runbook_url_come_from_values(helm: Path, tmp_path: Path) -> None:
    rule = {
        "enabled": True,
        "selector": 'job="slo"',
        "runbookURL": "https://runbooks.example/ops.html",
        "thresholds": {"expiryLagP99Seconds": 1.5, "heartbeatErrorRatio": 0.2},
    }
    objects = render_values(helm, {"metrics": {"prometheusRule": rule}}, tmp_path)
    alerts = {alert["alert"]: alert for alert in rules_of(objects)}
    watch = 'xg2g_watch_last_event_timestamp_seconds{job="slo", resource=~"sessions|pods"}'
    assert watch in alerts["SessionOperatorWatchStalled"]["expr"]
    assert alerts["SessionOperatorExpiryLagHigh"]["expr"].endswith("\n> 1.5")
    assert alerts["SessionOperatorHeartbeatErrors"]["expr"].endswith("\n> 0.2")
    assert alerts["SessionOperatorNoLeader"]["annotations"]["runbook_url"] == (
        "https://runbooks.example/ops.html#sessionoperatornoleader"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("metrics.prometheusRule.thresholds.authRefusedRatio=1.5", "authRefusedRatio"),
        ("metrics.prometheusRule.thresholds.watchStalledSeconds=0", "watchStalledSeconds"),
        ('metrics.prometheusRule.selector=job="x"}', "selector"),
        ("metrics.grafanaDashboard.labels.grafana_dashboard=1", "grafana_dashboard"),
    ],
)
def test_values_schema_refuses_a_bad_monitoring_value(
    helm: Path, value: str, expected: str
) -> None:
    assert expected in refusal(helm, "metrics.prometheusRule.enabled=true", value)


def test_without_the_size_webhook_its_alerts_are_left_out(helm: Path) -> None:
    objects = render(helm, *MONITORING_ON, "tls.enabled=false")
    alerts = [alert["alert"] for alert in rules_of(objects)]
    assert alerts == [name for name in ALERTS if name not in WEBHOOK_ALERTS]


def test_promtool_is_the_pinned_prometheus_release(promtool: Path, tmp_path: Path) -> None:
    version = go_tool("prometheus", REPO).version  # v0.3MM.P is Prometheus 3.MM.P
    match = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", version)
    assert match, version
    minor, patch = match.groups()
    result = run_promtool(promtool, "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"promtool, version 3.{int(minor)}.{patch} ")


def test_promtool_checks_the_rules(helm: Path, promtool: Path, tmp_path: Path) -> None:
    rules = write_rules_file(render(helm, *MONITORING_ON), tmp_path)
    result = run_promtool(promtool, "check", "rules", rules.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_every_alert_firing_and_quiet(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    write_rules_file(render(helm, "metrics.prometheusRule.enabled=true"), tmp_path)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool(promtool, "test", "rules", "--diff", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for alert in ALERTS:
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == alert]
        assert any(expected), f"no case where {alert} fires"
        assert [] in expected, f"no case where {alert} stays quiet"


def test_the_alert_tests_fail_when_an_alert_changes(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    objects = render(helm, "metrics.prometheusRule.enabled=true")
    rule = next(r for r in rules_of(objects) if r["alert"] == "SessionOperatorNoLeader")
    rule["for"] = "5m"
    write_rules_file(objects, tmp_path)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "SessionOperatorNoLeader" in result.stdout + result.stderr


def test_dashboard_is_a_config_map_for_the_grafana_sidecar(helm: Path) -> None:
    objects = render(
        helm, *MONITORING_ON, "metrics.grafanaDashboard.annotations.grafana_folder=Operators"
    )
    config_map = only(objects, "ConfigMap", f"{RELEASE}-session-lease-operator-dashboard")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    dashboard = dashboard_of(objects)
    source = json.loads((CHART / "dashboards" / "session-lease-operator.json").read_text())
    assert dashboard == source
    assert dashboard["uid"] == "session-lease-operator"
    assert {panel["title"] for panel in dashboard["panels"]} >= PANEL_TITLES
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "job"}


def test_every_dashboard_query_parses_and_selects_the_release(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    dashboard = dashboard_of(render(helm, *MONITORING_ON))
    queries = panel_queries(dashboard)
    records = []
    for number, (title, query) in enumerate(queries):
        assert 'job="$job", namespace="$namespace"' in query or (
            'name="session-size.xg2g.io"' in query
        ), title
        records.append({"record": f"dashboard:query_{number}", "expr": grafana_to_promql(query)})
    rules = tmp_path / "dashboard.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = run_promtool(promtool, "check", "rules", rules.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def grafana_to_promql(query: str, job: str = "j", namespace: str = "n") -> str:
    """*query* with Grafana's variables filled in, as Grafana sends it."""
    return (
        query.replace("$__rate_interval", "1m")
        .replace("$job", job)
        .replace("$namespace", namespace)
    )
