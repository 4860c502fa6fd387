"""The chart's monitoring against real metrics: a real Prometheus (built like the other tools,
``hack/tools/prometheus``) scrapes the operator's metrics port and the apiserver on loopback
every second, with the chart's PrometheusRule loaded as its rules file, while Sessions live,
beat, expire, time out starting and meet the size webhook, which refuses and fails.

Then every alert's expression, without its last line (its comparison with the threshold:
``tests/unit/test_monitoring_rules.py`` holds every expression to that shape), and every
query of the dashboard, with Grafana's variables filled in as Grafana does, return data;
and every rule evaluates without an error. Targets carry the labels a ServiceMonitor gives
(``job`` the metrics Service's name, ``namespace`` the release's), so the rules are the chart's
as rendered, unchanged.

The webhook registration is cluster-wide, so the module has a control plane of its own.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.binaries import ensure_tool, go_tool
from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from harness.operator_process import OperatorProcess
from session_operator.timestamps import format_timestamp
from tests.e2e.conftest import REPO, Cluster, wait_for
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.sessions import create_session, wait_for_state
from tests.e2e.webhooks import register_size_webhook

CHART = REPO / "helm" / "session-lease-operator"
RELEASE, NAMESPACE = "slo", "ops"
JOB = f"{RELEASE}-session-lease-operator-metrics"
"""The ``job`` label a ServiceMonitor gives the release's targets: the metrics Service's name."""
WEBHOOK = "session-size-monitoring-e2e"
MAX_BYTES = 16 * 1024
SCRAPE_SECONDS = 1
RATE_INTERVAL = "1m"
"""What Grafana puts for ``$__rate_interval`` here: at least four scrape intervals."""
UNSCHEDULED_POD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}


@dataclass(frozen=True)
class Monitoring:
    """The chart's alerts and dashboard as rendered for release slo in namespace ops."""

    groups: list[dict[str, Any]]
    dashboard: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Every alerting rule."""
        return [rule for group in self.groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def monitoring() -> Monitoring:
    """The chart rendered with its PrometheusRule and dashboard."""
    helm = ensure_tool(go_tool("helm", REPO), REPO).binary
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.grafanaDashboard.enabled=true"],
        capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO), "KUBECONFIG": "/dev/null"},
    )  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    [dashboard] = [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]
    return Monitoring(
        rule["spec"]["groups"], json.loads(dashboard["data"]["session-lease-operator.json"])
    )


@dataclass(frozen=True)
class MonitoredOperator:
    """The operator, and where the apiserver and Prometheus reach it."""

    process: OperatorProcess
    metrics_port: int
    webhook_port: int
    cert_file: Path
    """Its serving certificate, its own CA."""


@pytest.fixture(scope="module")
def operator(
    private_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MonitoredOperator]:
    """``session-operator run`` over TLS, with the size webhook on its own port and /metrics
    on a plain HTTP port of its own (as the chart runs it with config.metricsPort)."""
    cluster = private_cluster
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sessions.xg2g.io")
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "session-heartbeat-clusterrole.yaml"))
    directory = tmp_path_factory.mktemp("monitored-operator")
    cert_file, key_file = self_signed_certificate(directory)
    metrics_port, webhook_port = free_port(), free_port()
    process = OperatorProcess(
        cluster.kubeconfig,
        directory / "operator.log",
        {
            "XG2G_SESSION_TLS_CERT_FILE": str(cert_file),
            "XG2G_SESSION_TLS_KEY_FILE": str(key_file),
            "XG2G_SESSION_WEBHOOK_PORT": str(webhook_port),
            "XG2G_SESSION_METRICS_PORT": str(metrics_port),
            "XG2G_SESSION_MAX_SESSION_BYTES": str(MAX_BYTES),
        },
        tls=ssl.create_default_context(cafile=str(cert_file)),
    )
    process.start()
    yield MonitoredOperator(process, metrics_port, webhook_port, cert_file)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, check=False)
    process.stop()


class Prometheus:
    """A Prometheus server on a free loopback port, its data in a directory of its own."""

    def __init__(self, binary: Path, directory: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.log_path = directory / "prometheus.log"
        (directory / "prometheus.yaml").write_text(yaml.safe_dump(config))
        self._argv = [
            str(binary),
            f"--config.file={directory / 'prometheus.yaml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        assert wait_for(self._ready, timeout=30), f"Prometheus not ready:\n{self.log_tail()}"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def _ready(self) -> bool:
        assert self._process is not None
        assert self._process.poll() is None, f"Prometheus exited:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """``GET /api/v1/<path>``: the answer's ``data``, after asserting its status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=15) as reply:
                answer: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as error:
            answer = json.load(error)
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        data: dict[str, Any] = answer["data"]
        return data

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) *promql* evaluates to now."""
        data = self.api("query", query=promql)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture(scope="module")
def prometheus(
    private_cluster: Cluster,
    operator: MonitoredOperator,
    monitoring: Monitoring,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """Prometheus scraping the operator (as the ServiceMonitor's target) and the apiserver,
    with the chart's rules, every second."""
    control_plane = private_cluster.control_plane
    assert control_plane is not None
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": monitoring.groups}))
    token_file = directory / "apiserver-token"
    token_file.write_text(control_plane.admin_token)
    interval = f"{SCRAPE_SECONDS}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(directory / "rules.yaml")],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator.metrics_port}"],
                        "labels": {"namespace": NAMESPACE},
                    }
                ],
            },
            {
                "job_name": "apiserver",
                "scheme": "https",
                "authorization": {"credentials_file": str(token_file)},
                "tls_config": {"ca_file": str(control_plane.ca_file)},
                "static_configs": [{"targets": [control_plane.server.removeprefix("https://")]}],
            },
        ],
    }
    binary = ensure_tool(go_tool("prometheus", REPO), REPO).binary
    server = Prometheus(binary, directory, config)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def exercised(
    private_cluster: Cluster, operator: MonitoredOperator, prometheus: Prometheus
) -> Prometheus:
    """Prometheus, once it has scraped what every alert and panel reads: heartbeats of every
    outcome, a lease that ran out, a start that timed out, the webhook failing while nobody
    answers it, then refusing oversized Sessions. A labelled counter appears at its first
    increase, so what a rate must see happens again once the counter has been scraped."""
    cluster = private_cluster
    namespace = "monitoring-e2e"
    cluster.kubectl("create", "namespace", namespace)
    assert wait_for(scraped(prometheus, f'up{{job="{JOB}"}} == 1'), timeout=15)

    # Registered while nobody answers it: the apiserver fails the write (failurePolicy Fail).
    nobody = f"https://127.0.0.1:{free_port()}/admission/sessions"
    register_size_webhook(cluster, WEBHOOK, nobody, operator.cert_file)
    assert wait_for(lambda: "failed calling webhook" in dry_run(cluster, namespace, 0), 15)
    calling_error = (
        'apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error"}'
    )
    assert wait_for(scraped(prometheus, calling_error), timeout=15)
    assert "failed calling webhook" in dry_run(cluster, namespace, 0)
    webhook = f"https://127.0.0.1:{operator.webhook_port}/admission/sessions"
    register_size_webhook(cluster, WEBHOOK, webhook, operator.cert_file)
    refused = f"at most {MAX_BYTES} are accepted"
    assert wait_for(lambda: refused in dry_run(cluster, namespace, 2 * MAX_BYTES), 15)

    create_session(cluster, namespace, "beaten", BEATEN_LEASE)
    create_session(cluster, namespace, "abandoned", SHORT_LEASE)
    create_session(cluster, namespace, "never-starts", NEVER_STARTS)
    create_session(cluster, namespace, "held", held_for_an_hour())
    wait_for_state(cluster, namespace, "beaten", {"ready"}, timeout=10)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    stranger = service_account(cluster, namespace, "stranger")
    beat_every_way(operator.process, namespace, token, stranger)
    assert wait_for(scraped(prometheus, f'xg2g_sessions_heartbeat_total{{job="{JOB}"}}'), 15)
    time.sleep(2 * SCRAPE_SECONDS)
    beat_every_way(operator.process, namespace, token, stranger)

    wait_for_state(cluster, namespace, "abandoned", {"stopped"}, timeout=15)
    gone = operator.process.url + heartbeat_path(namespace, "abandoned")
    assert call("POST", gone, token, tls=operator.process.tls).status == 410
    wait_for_state(cluster, namespace, "never-starts", {"failed"}, timeout=20)

    huge = json.dumps(session(namespace, "huge", 2 * MAX_BYTES))
    assert refused in cluster.kubectl("create", "-f", "-", input_text=huge, check=False).stderr

    for promql in (
        f'xg2g_sessions_stopped_total{{job="{JOB}", reason="StartTimeout"}}',
        f'xg2g_session_expiry_lag_seconds_count{{job="{JOB}"}} > 0',
        f'xg2g_sessions_heartbeat_total{{job="{JOB}", result="gone"}}',
        f'xg2g_session_holds_total{{job="{JOB}"}}',
        'apiserver_admission_webhook_rejection_count{error_type="no_error"} > 1',
    ):
        assert wait_for(scraped(prometheus, promql), timeout=30), promql
    return prometheus


BEATEN_LEASE = {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 1}}
SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
NEVER_STARTS = {"template": UNSCHEDULED_POD, "startTimeoutSeconds": 2}
"""A Pod no node runs: the Session fails with StartTimeout after 2 s."""


def held_for_an_hour() -> dict[str, Any]:
    """A lease nobody beats, under a hold of an hour: the hold is taken up."""
    until = datetime.now(UTC) + timedelta(hours=1)
    return {**SHORT_LEASE, "hold": {"until": format_timestamp(until)}}


def beat_every_way(operator: OperatorProcess, namespace: str, token: str, stranger: str) -> None:
    """One heartbeat of each outcome but gone: extended (the interval has passed), noop,
    unauthorized, forbidden, not_found, error (a sessionID that names nothing possible)."""
    url = operator.url
    beat = url + heartbeat_path(namespace, "beaten")
    time.sleep(1.1)  # past the heartbeat interval: the next beat writes
    statuses = [
        call("POST", beat, token, tls=operator.tls).status,
        call("POST", beat, token, tls=operator.tls).status,
        call("POST", beat, "not-a-token", tls=operator.tls).status,
        call("POST", beat, stranger, tls=operator.tls).status,
        call("POST", url + heartbeat_path(namespace, "nobody"), token, tls=operator.tls).status,
        call("POST", f"{url}/api/v3/sessions/-bad-/heartbeat", token, tls=operator.tls).status,
    ]
    assert statuses == [200, 200, 401, 403, 404, 400]


def scraped(prometheus: Prometheus, promql: str) -> Callable[[], bool]:
    """Whether *promql* has data in Prometheus now."""
    return lambda: bool(prometheus.query(promql))


def session(namespace: str, name: str, padding: int) -> dict[str, Any]:
    """A Session whose template's Pod annotation holds *padding* bytes."""
    template = {"metadata": {"annotations": {"padding": "x" * padding}}, **UNSCHEDULED_POD}
    return {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": template},
    }


def dry_run(cluster: Cluster, namespace: str, padding: int) -> str:
    """What the apiserver says to a server-side dry run of a Session with *padding* bytes."""
    body = json.dumps(session(namespace, "probe", padding))
    return cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input_text=body, check=False
    ).stderr


def without_comparison(expr: str) -> str:
    """An alert's expression without its last line, the comparison with the threshold."""
    *measured, comparison = expr.splitlines()
    assert comparison.lstrip()[:1] in "<>=!", expr
    return "\n".join(measured)


def as_grafana_sends_it(query: str) -> str:
    """A dashboard query with the dashboard's variables set to this release."""
    return (
        query.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", JOB)
        .replace("$namespace", NAMESPACE)
    )


def test_prometheus_scrapes_the_operator_and_the_apiserver(exercised: Prometheus) -> None:
    targets = exercised.api("targets", state="active")["activeTargets"]
    health = {target["labels"]["job"]: target["health"] for target in targets}
    assert health == {JOB: "up", "apiserver": "up"}, targets


def test_every_alert_expression_returns_data(exercised: Prometheus, monitoring: Monitoring) -> None:
    assert len(monitoring.alerts) == 8
    for alert in monitoring.alerts:
        assert exercised.query(without_comparison(alert["expr"])), alert["alert"]
        exercised.query(alert["expr"])  # and the whole expression evaluates


def test_the_measures_behind_the_alerts_say_what_happened(
    exercised: Prometheus, monitoring: Monitoring
) -> None:
    measured = {
        alert["alert"]: float(exercised.query(without_comparison(alert["expr"]))[0]["value"][1])
        for alert in monitoring.alerts
        if alert["alert"] != "SessionOperatorWatchStalled"
    }
    assert measured["SessionOperatorNoLeader"] == 1  # a replica leads
    assert measured["SessionOperatorSessionsStuckStarting"] > 0
    assert measured["SessionOperatorAuthRefused"] > 0
    assert measured["SessionOperatorWebhookFailing"] > 0
    assert measured["SessionOperatorWebhookRefusing"] > 0
    assert 0 <= measured["SessionOperatorExpiryLagHigh"] < 60


def test_every_rule_evaluates_without_error(exercised: Prometheus, monitoring: Monitoring) -> None:
    def all_evaluated() -> bool:
        rules = rules_of(exercised)
        return len(rules) == len(monitoring.alerts) and all(
            not rule["lastEvaluation"].startswith("0001") for rule in rules
        )

    assert wait_for(all_evaluated, timeout=10)
    for rule in rules_of(exercised):
        assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), rule


def rules_of(prometheus: Prometheus) -> list[dict[str, Any]]:
    """The rules Prometheus has loaded, with their health."""
    groups = prometheus.api("rules")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_dashboard_query_returns_data(exercised: Prometheus, monitoring: Monitoring) -> None:
    panels = [panel for panel in monitoring.dashboard["panels"] if panel["type"] != "row"]
    assert panels
    for panel in panels:
        for target in panel["targets"]:
            promql = as_grafana_sends_it(target["expr"])
            assert exercised.query(promql), f"{panel['title']}: {promql}"


def test_the_dashboard_variables_find_the_release(
    exercised: Prometheus, monitoring: Monitoring
) -> None:
    for variable in monitoring.dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        # label_values(METRIC, LABEL) lists LABEL's values among METRIC's series.
        definition = as_grafana_sends_it(variable["query"]["query"])
        inner = definition.removeprefix("label_values(").removesuffix(")")
        metric, label = (part.strip() for part in inner.rsplit(",", 1))
        values = {
            sample["metric"][label] for sample in exercised.query(f"group by ({label}) ({metric})")
        }
        assert {"namespace": NAMESPACE, "job": JOB}[variable["name"]] in values
