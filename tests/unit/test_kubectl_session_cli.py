"""``kubectl session`` from a terminal: its verbs and options, where it finds the cluster and
the namespace, and every failure said in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from session_operator.heartbeat_client import HeartbeatClient, HeartbeatFailed
from session_operator.kubectl_session import beat, holds, kubeconfig
from session_operator.kubectl_session.__main__ import main
from session_operator.kubectl_session.arguments import build_parser
from session_operator.kubectl_session.errors import CommandError
from session_operator.kubectl_session.tokens import IssuedToken
from session_operator.kubectl_session.waiting import Target, verdict
from tests.kubeconfigs import unreachable_kubeconfig
from tests.stub_api import Answer, acknowledgement, expiring_soon, problem, stub_api

VERBS = ("list", "get", "describe", "beat", "hold", "release", "stop", "wait", "logs")


KubectlSession = Callable[..., tuple[int, str, str]]


@pytest.fixture
def kubectl_session(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> KubectlSession:
    """``kubectl-session ARGS`` in this process with *env* over an environment without
    this machine's kubeconfig and heartbeat variables; its exit code, stdout, stderr."""
    for variable in ("KUBECONFIG", "COLUMNS", "SESSION_API_URL", "SESSION_API_TOKEN",
                     "SESSION_API_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def kubeconfig_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig of two contexts, the current one in namespace ``media``; in KUBECONFIG."""
    path = unreachable_kubeconfig(tmp_path / "kubeconfig")
    document = yaml.safe_load(path.read_text())
    (context,) = document["contexts"]
    document["contexts"] = [
        {"name": "work", "context": {**context["context"], "namespace": "media"}},
        {"name": "plain", "context": context["context"]},
    ]
    document["current-context"] = "work"
    path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_a_help_that_exits_0(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kubectl session {verb}")


def test_the_help_names_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"\n    {verb} " in out for verb in VERBS), out


def test_an_unknown_verb_is_a_usage_error(kubectl_session: KubectlSession) -> None:
    code, _, err = kubectl_session("frobnicate")
    assert code == 2
    assert err.startswith("usage: kubectl session")
    assert "invalid choice: 'frobnicate'" in err


def test_the_kubeconfig_options_go_before_or_after_the_verb() -> None:
    parser = build_parser()
    before = parser.parse_args(["-n", "media", "--context", "work", "list"])
    after = parser.parse_args(["list", "-n", "media", "--context", "work"])
    neither = parser.parse_args(["list"])
    assert (before.namespace, before.context) == ("media", "work")
    assert (after.namespace, after.context) == ("media", "work")
    assert (neither.namespace, neither.context, neither.kubeconfig) == (None, None, None)


def test_wait_needs_a_known_target_and_reads_durations() -> None:
    parser = build_parser()
    args = parser.parse_args(["wait", "s", "--for=stopped", "--timeout=1m30s"])
    assert (args.target, args.timeout) == ("stopped", timedelta(seconds=90))
    assert parser.parse_args(["wait", "s", "--for", "ready"]).timeout == timedelta(seconds=60)
    for wrong in (
        ["wait", "s", "--for=gone"],
        ["wait", "s"],
        ["wait", "s", "--for=ready", "--timeout=0"],
    ):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(wrong)
        assert exit_.value.code == 2


def test_hold_takes_a_duration_or_a_time_and_not_both() -> None:
    parser = build_parser()
    assert parser.parse_args(["hold", "s", "--for", "1h30m"]).duration == timedelta(minutes=90)
    until = parser.parse_args(["hold", "s", "--until", "2026-12-06T19:00:00+01:00"]).until
    assert until == datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    for wrong in (
        ["hold", "s"],
        ["hold", "s", "--for", "1h", "--until", "2026-12-06T18:00:00Z"],
        ["hold", "s", "--for", "0"],
        ["hold", "s", "--until", "2026-12-06 18:00"],  # RFC 3339 needs T and a zone
    ):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(wrong)
        assert exit_.value.code == 2


HOLD_NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_a_hold_asks_for_the_time_given_or_the_duration_from_now() -> None:
    three_hours = HOLD_NOW + timedelta(hours=3)
    assert holds.requested_end(HOLD_NOW, timedelta(hours=3), None) == three_hours
    assert holds.requested_end(HOLD_NOW, None, three_hours) == three_hours
    assert holds.held("desk", three_hours, HOLD_NOW) == (
        "session/desk: hold requested until 2026-12-06T13:00:00.000Z (3h from now)"
    )


def test_a_hold_until_a_time_that_has_passed_is_one_line() -> None:
    with pytest.raises(CommandError, match=r"^--until 2026-12-06T10:00:00.000Z has passed"):
        holds.requested_end(HOLD_NOW, None, HOLD_NOW)


@pytest.mark.parametrize(("state", "reason"), [("stopping", "LEASE_EXPIRED"), ("stopped", None)])
def test_a_session_that_is_not_live_cannot_be_held(state: str, reason: str | None) -> None:
    with pytest.raises(CommandError) as refused:
        holds.check_holdable("desk", session_in(state, reason))
    assert str(refused.value).startswith(f'session "desk" is {state}')
    assert str(refused.value).endswith(": a hold keeps only a live session")
    holds.check_holdable("desk", session_in("ready"))
    holds.check_holdable("desk", session_in(None))  # not initialised yet: about to be live


def test_release_of_a_session_without_a_hold_has_nothing_to_do() -> None:
    assert holds.not_held("desk", {"spec": {"stop": False}}) == "session/desk: not held"
    assert holds.not_held("desk", {"spec": {"hold": {"until": "2026-12-06T18:00:00Z"}}}) is None


def test_beat_takes_one_kind_of_token() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["beat", "s", "--service-account", "a", "--token-file", "f"])


def test_the_namespace_is_the_flag_else_the_contexts_else_default(kubeconfig_file: Path) -> None:
    assert kubeconfig.resolve(None, None, None).namespace == "media"
    assert kubeconfig.resolve(None, None, "games").namespace == "games"
    assert kubeconfig.resolve(None, "plain", None).namespace == "default"
    assert kubeconfig.resolve(str(kubeconfig_file), "plain", None).files == str(kubeconfig_file)


def test_a_context_that_is_not_there_is_named(kubeconfig_file: Path) -> None:
    with pytest.raises(CommandError, match='context "elsewhere" not found in the kubeconfig'):
        kubeconfig.resolve(None, "elsewhere", None)


def test_a_kubeconfig_variable_naming_no_file_is_one_line(
    kubectl_session: KubectlSession, tmp_path: Path
) -> None:
    code, _, err = kubectl_session("list", KUBECONFIG=str(tmp_path / "gone"))
    assert code == 1
    assert err.splitlines() == [
        f"error: KUBECONFIG={tmp_path / 'gone'} names no file: point it at a kubeconfig file,"
        " or unset it to use ~/.kube/config"
    ]


def test_no_kubeconfig_at_all_is_one_line(kubectl_session: KubectlSession) -> None:
    code, _, err = kubectl_session("get", "s")
    assert code == 1
    assert err.splitlines() == [
        "error: no kubeconfig at ~/.kube/config: give --kubeconfig FILE or set KUBECONFIG"
    ]


@pytest.mark.parametrize(
    "argv",
    [("list",), ("get", "s"), ("describe", "s"), ("stop", "s"), ("wait", "s", "--for=ready"),
     ("logs", "s"), ("hold", "s", "--for=1h"), ("release", "s")],
)  # fmt: skip
def test_an_unreachable_apiserver_is_one_line(
    kubectl_session: KubectlSession, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    config = unreachable_kubeconfig(tmp_path / "kubeconfig")
    code, _, err = kubectl_session(*argv, "--kubeconfig", str(config))
    assert code == 1
    assert err.splitlines() == [
        "error: cannot reach the apiserver at https://127.0.0.1:1: connection refused"
    ]


def test_beat_without_a_url_or_a_token_says_what_to_give(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    no_url = kubectl_session("beat", "s")
    no_token = kubectl_session("beat", "s", "--url", "https://api:8443")
    assert no_url[0] == no_token[0] == 1
    assert no_url[2].splitlines() == [
        "error: where is the heartbeat API? give --url or set SESSION_API_URL"
    ]
    assert no_token[2].splitlines() == [
        "error: no token for the heartbeat API: give --service-account NAME (a ServiceAccount"
        " bound to session-heartbeat that you may create tokens for), --token-file FILE, or set"
        " SESSION_API_TOKEN"
    ]


def test_beat_once_with_a_token_from_the_environment(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    with stub_api(lambda path, token: acknowledgement(interval=5)) as api:
        code, out, err = kubectl_session(
            "beat", "living-room", "--url", api.url, "--allow-http", SESSION_API_TOKEN="t"
        )
    assert code == 0, err
    assert out.startswith("session/living-room: lease until 2030-01-01T00:00:00.000Z ("), out
    assert out.endswith(" left), next heartbeat in 5s\n")
    assert api.requests == [("/api/v3/namespaces/media/sessions/living-room/heartbeat", "Bearer t")]


def test_beat_says_when_the_lease_is_expiring_soon(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    with stub_api(lambda path, token: expiring_soon(24.5, interval=5)) as api:
        code, out, err = kubectl_session(
            "beat", "living-room", "--url", api.url, "--allow-http", SESSION_API_TOKEN="t"
        )
    assert code == 0, err
    assert out.endswith(" left, expiring soon), next heartbeat in 5s\n"), out


def test_beat_once_at_an_ended_session_is_one_line_and_exit_1(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    detail = "session media/s is stopped (USER_STOPPED): stop sending heartbeats"
    gone = problem(410, "session-gone", detail, state="stopped", stop_reason="USER_STOPPED")
    with stub_api(lambda path, token: gone) as api:
        code, _, err = kubectl_session(
            "beat", "s", "--url", api.url, "--allow-http", SESSION_API_TOKEN="t"
        )
    assert code == 1
    assert err.splitlines() == [f"error: heartbeat refused (410): {detail}"]


def test_beat_watch_at_a_session_that_ended_before_any_beat_is_an_error(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    gone = problem(404, "session-not-found", "no session media/typo")
    with stub_api(lambda path, token: gone) as api:
        code, out, err = kubectl_session(
            "beat", "typo", "--watch", "--url", api.url, "--allow-http", SESSION_API_TOKEN="t"
        )
    assert (code, out) == (1, "")
    assert err.splitlines() == ["error: heartbeat refused (404): no session media/typo"]


def test_beat_to_a_plain_http_url_needs_allow_http(
    kubectl_session: KubectlSession, kubeconfig_file: Path
) -> None:
    code, _, err = kubectl_session(
        "beat", "s", "--url", "http://127.0.0.1:9", SESSION_API_TOKEN="t"
    )
    assert code == 1
    assert err.splitlines() == [
        "error: refusing to send a bearer token over plain HTTP to http://127.0.0.1:9: use"
        " https://, or allow plain HTTP explicitly (--allow-http)"
    ]


def session_in(state: str | None, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {} if state is None else {"state": state}
    if reason:
        status["stopReason"] = reason
    return {"metadata": {"name": "s"}, "status": status}


@pytest.mark.parametrize("state", [None, "new", "starting"])
def test_waiting_for_ready_goes_on_while_the_session_may_still_get_there(state: str | None) -> None:
    assert not verdict(Target.READY, "s", session_in(state)).decided
    assert not verdict(Target.STOPPED, "s", session_in(state)).decided


def test_ready_is_met_by_ready_only() -> None:
    assert verdict(Target.READY, "s", session_in("ready")).met
    assert not verdict(Target.STOPPED, "s", session_in("ready")).decided


@pytest.mark.parametrize("state", ["stopping", "stopped", "failed"])
def test_a_session_that_stops_will_never_be_ready(state: str) -> None:
    outcome = verdict(Target.READY, "s", session_in(state, "LEASE_EXPIRED"))
    assert outcome.hopeless
    assert outcome.message == f'session "s" is {state} (LEASE_EXPIRED): it will never be ready'


def test_stopped_is_met_by_a_terminal_state_or_a_deletion() -> None:
    assert not verdict(Target.STOPPED, "s", session_in("stopping", "USER_STOPPED")).decided
    stopped = verdict(Target.STOPPED, "s", session_in("stopped", "USER_STOPPED"))
    assert (stopped.met, stopped.message) == (True, "session/s: stopped (USER_STOPPED)")
    assert verdict(Target.STOPPED, "s", session_in("failed", "FAILED")).met
    assert verdict(Target.STOPPED, "s", None).met
    assert verdict(Target.READY, "s", None).hopeless


def test_a_token_is_renewed_when_most_of_its_life_has_passed() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    token = IssuedToken("t", now + timedelta(hours=1))
    assert token.renew_in(now) == pytest.approx(2880)
    assert token.renew_in(now + timedelta(hours=2)) == 0


async def test_beating_on_moves_to_each_new_token_and_stops_when_the_session_ends() -> None:
    beats: list[str] = []

    def answer(path: str, authorization: str) -> Answer:
        beats.append(authorization)
        if len(beats) >= 4:
            return problem(
                410, "session-gone", "stopped", state="stopped", stop_reason="USER_STOPPED"
            )
        return acknowledgement(interval=1)

    tokens = iter(f"t{n}" for n in range(1, 10))
    with stub_api(answer) as api:
        endpoint = beat.Endpoint(api.url, None, allow_http=True)

        async def open_client() -> tuple[HeartbeatClient, float | None]:
            return endpoint.client("media/s", token=next(tokens)), 0.3

        ended = await asyncio.wait_for(beat.beat_until_ended(open_client, lambda ack: None), 10)

    assert (ended.state, ended.stop_reason) == ("stopped", "USER_STOPPED")
    # Each token beats at once, and is replaced (0.3 s) before the next beat (1 s) is due.
    assert beats == ["Bearer t1", "Bearer t2", "Bearer t3", "Bearer t4"]


async def test_beating_stops_at_once_on_a_token_the_api_refuses() -> None:
    refused = problem(403, "forbidden", "system:serviceaccount:media:sa may not beat here")
    with stub_api(lambda path, token: refused) as api:
        endpoint = beat.Endpoint(api.url, None, allow_http=True)

        async def open_client() -> tuple[HeartbeatClient, float | None]:
            return endpoint.client("media/s", token="t"), 3600.0

        with pytest.raises(HeartbeatFailed, match="403"):
            await asyncio.wait_for(beat.beat_until_ended(open_client, lambda ack: None), 10)
        assert len(api.requests) == 1
