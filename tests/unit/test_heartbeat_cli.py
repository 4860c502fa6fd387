"""``session-operator heartbeat`` from a terminal: what it needs, where it finds it, and what
it says, in one line naming the fix, when something is missing, wrong or unreachable."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from session_operator.heartbeat_cli import Usage, add_heartbeat_command, session_address
from tests.stub_api import Answer, acknowledgement, expiring_soon, in_turn, problem, stub_api
from tests.unit.builders import session_operator


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_heartbeat_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["heartbeat", *argv])


@pytest.fixture
def kubeconfig_in_media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "work",
                "contexts": [{"name": "work", "context": {"cluster": "c", "namespace": "media"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def test_a_bare_name_is_in_the_kubeconfig_contexts_namespace(kubeconfig_in_media: Path) -> None:
    assert session_address(parsed("living-room")) == "media/living-room"
    assert session_address(parsed("living-room", "-n", "games")) == "games/living-room"
    assert session_address(parsed("other/living-room")) == "other/living-room"
    assert session_address(parsed("--session-id", "6f1c")) == "6f1c"


def test_without_a_namespace_anywhere_a_bare_name_is_in_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert session_address(parsed("living-room")) == "default/living-room"


@pytest.mark.parametrize("argv", [(), ("s", "--session-id", "6f1c")])
def test_the_session_must_be_named_once(argv: tuple[str, ...]) -> None:
    with pytest.raises(Usage):
        session_address(parsed(*argv))


def heartbeat(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return session_operator("heartbeat", *argv, **env)


def test_without_a_url_it_asks_for_one() -> None:
    result = heartbeat("default/s", "--token", "t")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "session-operator heartbeat: where is the API? give --url or set SESSION_API_URL"
    )


def test_without_a_token_it_says_how_to_make_one() -> None:
    result = heartbeat("default/s", SESSION_API_URL="https://api.example:8443")
    assert result.returncode == 2
    assert "no token: give --token (or SESSION_API_TOKEN)" in result.stderr
    assert "kubectl create token SERVICEACCOUNT --audience session-lease-operator" in result.stderr


def test_an_unreachable_api_is_one_sentence() -> None:
    result = heartbeat(
        "default/s", "--once", "--allow-http", SESSION_API_URL="http://127.0.0.1:9",
        SESSION_API_TOKEN="t",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "session-operator heartbeat: cannot reach http://127.0.0.1:9: connection refused"
    )


WITHOUT_OPERATOR_RUNTIME = """
import importlib.abc, runpy, sys

ABSENT = {"kopf", "kubernetes_asyncio"}
asked = set()

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            asked.add(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
try:
    runpy.run_module("session_operator", run_name="__main__", alter_sys=True)
finally:
    loaded = [name for name in sys.modules if name.partition(".")[0] in ABSENT]
    print("absent modules asked for:", sorted(asked), "loaded:", loaded, file=sys.stderr)
"""
"""``python -m session_operator`` where neither kopf nor the Kubernetes client can be
imported; its last line on stderr names any import of them that was tried."""


def heartbeat_without_operator_runtime(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_OPERATOR_RUNTIME, "heartbeat", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_heartbeat_command_needs_neither_kopf_nor_the_kubernetes_client() -> None:
    # A client Pod's image need not carry the operator's runtime, and the command starts
    # at once: they take a second or more to load, and a Ctrl-C meanwhile would meet
    # Python's default handler.
    with stub_api(lambda path, token: acknowledgement(interval=5)) as api:
        beat = heartbeat_without_operator_runtime(
            "default/s", "--once", "--allow-http", "--url", api.url, "--token", "t"
        )
    helped = heartbeat_without_operator_runtime("--help")

    assert beat.returncode == 0, beat.stderr
    assert json.loads(beat.stdout)["heartbeat_interval"] == 5
    assert api.requests == [("/api/v3/namespaces/default/sessions/s/heartbeat", "Bearer t")]
    assert helped.returncode == 0, helped.stderr
    assert "Keep a session alive" in helped.stdout
    for result in (beat, helped):
        assert result.stderr.splitlines()[-1] == "absent modules asked for: [] loaded: []"


def test_a_wrapped_command_needs_neither_kopf_nor_the_kubernetes_client() -> None:
    with stub_api(lambda path, token: acknowledgement(interval=5)) as api:
        wrapped = heartbeat_without_operator_runtime(
            "default/s", "--allow-http", "--url", api.url, "--token", "t",
            "--", sys.executable, "-c", "raise SystemExit(4)",
        )  # fmt: skip

    assert wrapped.returncode == 4, wrapped.stderr
    assert len(api.requests) == 1
    assert wrapped.stderr.splitlines() == ["absent modules asked for: [] loaded: []"]


def test_help_is_plain_text_that_says_how_to_make_a_token() -> None:
    result = session_operator("heartbeat", "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert ":data:" not in result.stdout
    assert "kubectl create token SERVICEACCOUNT --audience session-lease-operator" in (
        result.stdout
    )
    assert "the CA certificate to trust for an https:// API" in " ".join(result.stdout.split())


@pytest.mark.parametrize(("status", "slug"), [(401, "unauthenticated"), (403, "forbidden")])
def test_a_token_refused_for_good_stops_at_once_with_the_apis_detail(
    status: int, slug: str
) -> None:
    detail = (
        "the token is for the audience 'https://kubernetes.default.svc', not"
        " session-lease-operator: kubectl create token demo-client --audience"
        " session-lease-operator"
    )
    with stub_api(lambda path, token: problem(status, slug, detail)) as api:
        result = heartbeat(
            "default/s", "--allow-http", "-v", SESSION_API_URL=api.url, SESSION_API_TOKEN="t"
        )
    assert result.returncode == 1
    assert len(api.requests) == 1, "a token given as it is was tried again"
    assert result.stderr.splitlines()[-1] == (
        f"session-operator heartbeat: heartbeat refused ({status}): {detail}"
    )
    assert "retrying" not in result.stderr


def test_without_v_it_says_when_it_starts_and_when_the_session_ends() -> None:
    answers = iter([acknowledgement(interval=1)])

    def answer(path: str, token: str) -> Answer:
        ended = problem(410, "session-gone", "session default/s is stopped: stop sending")
        return next(answers, ended)

    with stub_api(answer) as api:
        result = heartbeat(
            "default/s", "--allow-http", SESSION_API_URL=api.url, SESSION_API_TOKEN="t"
        )
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"session-operator heartbeat: keeping default/s alive through {api.url} until it ends"
        " or Ctrl-C (-v: a line per beat)",
        "session-operator heartbeat: session default/s ended: session default/s is stopped:"
        " stop sending",
    ]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "127.0.0.1:8080",
            "'127.0.0.1:8080' is not a URL: write https://127.0.0.1:8080, or"
            " http://127.0.0.1:8080 with --allow-http",
        ),
        ("http:127.0.0.1:8080", "'http:127.0.0.1:8080' is not a URL: write http://127.0.0.1:8080"),
        ("http://:8080", "'http://:8080' names no host: write http://HOST:PORT"),
        ("http://api:99999", "'http://api:99999' has a bad port (Port out of range 0-65535)"),
        ("ftp://api", "the API's URL must start with https:// or http:// (got 'ftp://api')"),
    ],
)
def test_a_url_that_is_no_url_says_how_to_write_it(url: str, says: str) -> None:
    result = heartbeat("default/s", "--once", "--allow-http", "--url", url, "--token", "t")
    assert result.returncode == 2
    assert result.stderr.strip() == f"session-operator heartbeat: {says}"


def test_https_to_a_plain_http_api_says_to_use_http() -> None:
    with stub_api(lambda path, token: acknowledgement()) as api:
        url = api.url.replace("http://", "https://")
        result = heartbeat("default/s", "--once", SESSION_API_URL=url, SESSION_API_TOKEN="t")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"session-operator heartbeat: no TLS handshake with {url} (wrong version number): if"
        " the API serves plain HTTP, use http:// with --allow-http"
    )


def test_an_unknown_host_says_to_check_the_url() -> None:
    url = "http://no-such-host.invalid:8080"
    result = heartbeat(
        "default/s", "--once", "--allow-http", SESSION_API_URL=url, SESSION_API_TOKEN="t"
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.startswith(f"session-operator heartbeat: cannot resolve the host of {url} (")
    assert message.endswith("): check --url")


@pytest.mark.parametrize("mode", ["--once", "-v"])
def test_a_url_with_a_path_that_has_no_api_is_a_failure_not_an_ended_session(mode: str) -> None:
    def answer(path: str, token: str) -> Answer:
        return problem(404, "not-found", "no such path")

    with stub_api(answer) as api:
        url = f"{api.url}/api/v3"
        result = heartbeat(
            "default/s", mode, "--allow-http", SESSION_API_URL=url, SESSION_API_TOKEN="t"
        )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"session-operator heartbeat: {url} has no heartbeat API (404 for"
        f" {url}/api/v3/namespaces/default/sessions/s/heartbeat): give --url the API's base"
        f" URL, like {api.url}"
    )
    assert len(api.requests) == 1


def test_a_session_the_api_does_not_know_has_ended() -> None:
    def answer(path: str, token: str) -> Answer:
        return problem(404, "session-not-found", "session default/s not found")

    with stub_api(answer) as api:
        result = heartbeat(
            "default/s", "--once", "--allow-http", SESSION_API_URL=api.url, SESSION_API_TOKEN="t"
        )
    assert result.returncode == 3
    assert "session default/s not found" in result.stderr


GONE = problem(410, "session-gone", "session default/s is stopped: stop sending")


def test_it_says_in_one_line_when_the_lease_is_expiring_soon() -> None:
    script = in_turn(
        acknowledgement(interval=0),
        expiring_soon(7.2),
        expiring_soon(6.2),
        expiring_soon(5.2),
        then=GONE,
    )
    with stub_api(script) as api:
        result = heartbeat(
            "default/s", "--allow-http", SESSION_API_URL=api.url, SESSION_API_TOKEN="t"
        )
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    warned = [line for line in lines if "expiring soon" in line]
    assert warned == [
        "session-operator heartbeat: default/s is expiring soon: its lease ends in 8s"
    ]
    assert lines.index(warned[0]) == 1  # after the line that it starts, before the end


def test_around_a_command_it_says_so_too() -> None:
    with stub_api(in_turn(expiring_soon(4.5, interval=5), then=GONE)) as api:
        result = heartbeat(
            "default/s",
            "--allow-http",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(0.5)",
            SESSION_API_URL=api.url,
            SESSION_API_TOKEN="t",
        )
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: default/s is expiring soon: its lease ends in 5s"
    ]
