"""``session-operator heartbeat NAME -- CMD ARGS…``: CMD runs while the session is kept
alive, with real child processes against a stub heartbeat API (and, for
``--stop-on-exit``, a stub apiserver)."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from session_operator.heartbeat_cli import add_heartbeat_command
from session_operator.heartbeat_client import HeartbeatClient
from session_operator.k8s.errors import error_for_status
from session_operator.kubectl_session.sessions import Sessions
from session_operator.wrapped_command import (
    EXIT_SESSION_ENDED,
    ApiserverStop,
    StopFailed,
    run_while_alive,
)
from tests.stub_api import Answer, acknowledgement, problem, stub_api

PYTHON = sys.executable
GONE = problem(
    410,
    "session-gone",
    "session default/s is stopping (LEASE_EXPIRED): stop sending heartbeats",
    state="stopping",
    stop_reason="LEASE_EXPIRED",
)
REFUSED = problem(403, "forbidden", "system:serviceaccount:default:player may not beat for s")

# A command that notes each SIGINT and SIGTERM it gets: `RECORDER LOG LINGER STATUS` writes
# LOG empty once its handlers are in place, then the signals' names as they come; after
# the first it waits LINGER seconds more (for a second one, if any is sent) and exits
# STATUS. Without a signal it exits STATUS after 30 s.
RECORDER = """
import signal, sys, time
from pathlib import Path

log, linger, status = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
got = []

def note(number, frame):
    got.append(signal.Signals(number).name)
    log.write_text(" ".join(got))

for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, note)
log.write_text("")
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(linger)
sys.exit(status)
"""


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_heartbeat_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["heartbeat", *argv])


def always(answer: Answer) -> Callable[[str, str], Answer]:
    return lambda path, token: answer


def environment(**env: str) -> dict[str, str]:
    """This machine's environment without its heartbeat or cluster settings, with *env*."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XG2G_SESSION_", "SESSION_API_"))
        and key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return {**base, "HOME": "/nonexistent", **env}


def as_started_by_a_shell() -> None:
    """``preexec_fn``: SIGINT at its default, as a shell starts a foreground command (a
    non-interactive shell's background job, as CI runs tests, would start it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(
    url: str,
    *argv: str,
    stdin: int | None = None,
    preexec: Callable[[], None] = as_started_by_a_shell,
    **env: str,
) -> subprocess.Popen[str]:
    """``session-operator heartbeat default/s … ARGV`` against *url*, in a session of its
    own (without a terminal, unless *preexec* gives it one: the signals a test sends reach
    it alone)."""
    return subprocess.Popen(
        [PYTHON, "-m", "session_operator", "heartbeat", "default/s", "--allow-http",
         "--url", url, *argv],
        env=environment(SESSION_API_TOKEN="t", **env),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec,
    )  # fmt: skip


def run(url: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    process = start(url, *argv, **env)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def recorder(log: Path, *, linger: float = 0.0, status: int = 0) -> list[str]:
    return [PYTHON, "-c", RECORDER, str(log), str(linger), str(status)]


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("status", [0, 3, 42])
def test_it_exits_with_the_commands_status(status: int) -> None:
    with stub_api(always(acknowledgement())) as api:
        result = run(api.url, "--", PYTHON, "-c", f"raise SystemExit({status})")
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    assert len(api.requests) >= 1


def test_a_command_ended_by_a_signal_exits_128_plus_its_number() -> None:
    kill_itself = "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)"
    with stub_api(always(acknowledgement())) as api:
        result = run(api.url, "--", PYTHON, "-c", kill_itself)
    assert result.returncode == 128 + signal.SIGUSR1, result.stderr


def test_the_command_inherits_stdout_and_starts_after_the_first_acknowledgement(
    tmp_path: Path,
) -> None:
    beats: list[float] = []

    def answer(path: str, token: str) -> Answer:
        beats.append(time.time())
        return acknowledgement()

    started = tmp_path / "started"
    says = f"import pathlib, time; pathlib.Path({str(started)!r}).write_text(repr(time.time())); print('hello')"  # noqa: E501
    with stub_api(answer) as api:
        result = run(api.url, "--", PYTHON, "-c", says)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert beats[0] < float(started.read_text())


def test_beats_go_out_while_the_command_runs() -> None:
    with stub_api(always(acknowledgement(interval=1))) as api:
        result = run(api.url, "--", PYTHON, "-c", "import time; time.sleep(2.6)")
    assert result.returncode == 0, result.stderr
    assert len(api.requests) >= 3  # the first, then one a second and a bit
    assert set(api.requests) == {("/api/v3/namespaces/default/sessions/s/heartbeat", "Bearer t")}


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_are_passed_on_and_beats_go_on_until_it_exits(
    number: signal.Signals, tmp_path: Path
) -> None:
    log = tmp_path / "signals"
    with stub_api(always(acknowledgement(interval=1))) as api:
        process = start(api.url, "--", *recorder(log, linger=2.5, status=5))
        wait_until(log.exists)
        process.send_signal(number)
        wait_until(lambda: log.read_text() != "")
        beats_at_the_signal = len(api.requests)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 5, err
    assert log.read_text() == number.name
    assert len(api.requests) > beats_at_the_signal, "it stopped beating at the signal"
    assert err == ""


def test_ctrl_c_in_a_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    # The terminal sends Ctrl-C's SIGINT to its whole foreground process group: the
    # command and CMD. Passed on as well, CMD would be interrupted twice.
    log = tmp_path / "signals"
    controller, terminal = os.openpty()

    def on_the_terminal() -> None:
        as_started_by_a_shell()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: the terminal is its own

    try:
        with stub_api(always(acknowledgement())) as api:
            process = start(
                api.url, "--", *recorder(log, linger=1.0), stdin=terminal, preexec=on_the_terminal
            )
            wait_until(log.exists)
            os.write(controller, termios.tcgetattr(terminal)[6][termios.VINTR])
            _, err = process.communicate(timeout=20)
    finally:
        os.close(controller)
        os.close(terminal)
    assert process.returncode == 0, err
    assert log.read_text() == "SIGINT"


def test_when_the_session_ends_the_command_gets_sigterm_and_the_status_says_so(
    tmp_path: Path,
) -> None:
    log = tmp_path / "signals"

    def answer(path: str, token: str) -> Answer:
        return GONE if log.exists() else acknowledgement(interval=1)

    with stub_api(answer) as api:
        result = run(api.url, "--", *recorder(log, status=0))
    assert result.returncode == EXIT_SESSION_ENDED == 124
    assert log.read_text() == "SIGTERM"
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: session default/s ended (stopping, LEASE_EXPIRED);"
        f" stopping {PYTHON} (SIGTERM, then SIGKILL after 10s)"
    ]


def test_a_session_over_before_the_command_starts_never_runs_it(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with stub_api(always(GONE)) as api:
        result = run(api.url, "--", "touch", str(ran))
    assert result.returncode == 124
    assert not ran.exists()
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: session default/s ended (stopping, LEASE_EXPIRED);"
        " not starting touch"
    ]


def test_heartbeats_refused_for_good_stop_the_command_with_125(tmp_path: Path) -> None:
    log = tmp_path / "signals"

    def answer(path: str, token: str) -> Answer:
        return REFUSED if log.exists() else acknowledgement(interval=1)

    with stub_api(answer) as api:
        result = run(api.url, "--", *recorder(log, status=0))
    assert result.returncode == 125
    assert log.read_text() == "SIGTERM"
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: heartbeat refused (403): system:serviceaccount:default:player"
        f" may not beat for s; stopping {PYTHON} (SIGTERM, then SIGKILL after 10s)"
    ]


async def test_a_command_that_outlives_sigterm_is_killed_after_the_grace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "ready"
    deaf = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        f" pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )

    def answer(path: str, token: str) -> Answer:
        return GONE if ready.exists() else acknowledgement(interval=1)

    with stub_api(answer) as api:
        async with HeartbeatClient(api.url, "default/s", token="t", allow_http=True) as client:
            started = time.monotonic()
            status = await asyncio.wait_for(
                run_while_alive(client, [PYTHON, "-c", deaf], kill_after=0.5), timeout=20
            )
    assert status == 124
    assert time.monotonic() - started < 10
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"session-operator heartbeat: {PYTHON} still runs 0.5s after SIGTERM: SIGKILL"
    )


@pytest.mark.parametrize(
    ("command", "status", "says"),
    [
        ("no-such-command-here", 127, "no-such-command-here: command not found"),
        ("{tmp}/missing", 127, "cannot run {tmp}/missing: no such file"),
        ("{tmp}/plain", 126, "cannot run {tmp}/plain: permission denied"),
        ("{tmp}", 126, "cannot run {tmp}: permission denied"),
    ],
)
def test_a_command_that_cannot_run_is_127_or_126_before_any_beat(
    command: str, status: int, says: str, tmp_path: Path
) -> None:
    (tmp_path / "plain").write_text("not a program")
    (tmp_path / "plain").chmod(0o644)
    with stub_api(always(acknowledgement())) as api:
        result = run(api.url, "--", command.format(tmp=tmp_path))
    assert result.returncode == status
    assert result.stderr.splitlines() == [
        f"session-operator heartbeat: {says.format(tmp=tmp_path)}"
    ]
    assert api.requests == []


def test_a_program_the_system_cannot_execute_is_126(tmp_path: Path) -> None:
    program = tmp_path / "program"
    program.write_text("echo no interpreter line\n")
    program.chmod(0o755)
    with stub_api(always(acknowledgement())) as api:
        result = run(api.url, "--", str(program))
    assert result.returncode == 126
    assert result.stderr.splitlines() == [
        f"session-operator heartbeat: cannot run {program}: exec format error"
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--"], "which command? give it after --: heartbeat NAME -- CMD ARGS..."),
        (["--once", "--", "true"], "--once sends one heartbeat: it does not go with -- CMD"),
        (
            ["--stop-on-exit"],
            "--stop-on-exit goes with a command: heartbeat NAME --stop-on-exit -- CMD",
        ),
    ],
)
def test_a_command_line_that_does_not_go_together_is_exit_2(argv: list[str], says: str) -> None:
    with stub_api(always(acknowledgement())) as api:
        result = run(api.url, *argv)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"session-operator heartbeat: {says}"]
    assert api.requests == []


def test_the_words_after_dashes_are_the_command_whatever_comes_before() -> None:
    args = parsed("default/s", "-v", "--", "ls", "-l", "--", "-v")
    assert (args.session, args.verbose, args.wrapped_command) == (
        "default/s", True, ["ls", "-l", "--", "-v"]
    )  # fmt: skip
    by_id = parsed("--session-id", "6f1c", "--", "sleep", "3")
    assert (by_id.session, by_id.session_id, by_id.wrapped_command) == (
        None, "6f1c", ["sleep", "3"]
    )  # fmt: skip
    assert parsed("default/s").wrapped_command is None


def test_help_says_how_to_wrap_a_command_and_its_exit_codes() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "session_operator", "heartbeat", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    text = " ".join(result.stdout.split())
    assert "session-operator heartbeat [OPTIONS] [NAMESPACE/]NAME -- CMD [ARGS...]" in text
    assert "the exit code is CMD's (128+N if signal N ended it)" in text
    assert (
        "2 usage, 124 the session ended, 125 heartbeats refused for good, 126 CMD cannot be"
        " run, 127 CMD not found" in text
    )
    assert "--stop-on-exit" in text


# --stop-on-exit: the stop is asked for when CMD has ended (that it sets spec.stop and the
# session ends USER_STOPPED: tests/e2e/test_heartbeat_client.py).


class RecordingStopper:
    """Counts the stops asked for; refuses them with *refusal*, if given."""

    def __init__(self, refusal: str | None = None) -> None:
        self.stops = 0
        self._refusal = refusal

    async def stop(self) -> None:
        self.stops += 1
        if self._refusal is not None:
            raise StopFailed(self._refusal)


async def run_in_process(
    answer: Callable[[str, str], Answer], command: list[str], stopper: RecordingStopper
) -> int:
    with stub_api(answer) as api:
        async with HeartbeatClient(api.url, "default/s", token="t", allow_http=True) as client:
            return await asyncio.wait_for(
                run_while_alive(client, command, stopper=stopper), timeout=30
            )


async def test_stop_on_exit_asks_for_the_stop_when_the_command_ends() -> None:
    stopper = RecordingStopper()
    command = [PYTHON, "-c", "raise SystemExit(3)"]
    status = await run_in_process(always(acknowledgement()), command, stopper)
    assert (status, stopper.stops) == (3, 1)


async def test_a_refused_stop_is_one_line_and_the_status_stays_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stopper = RecordingStopper(refusal=FORBIDDEN)
    command = [PYTHON, "-c", "raise SystemExit(3)"]
    status = await run_in_process(always(acknowledgement()), command, stopper)
    assert (status, stopper.stops) == (3, 1)
    assert capsys.readouterr().err.splitlines() == [
        f"session-operator heartbeat: did not stop default/s after the command: {FORBIDDEN}"
    ]


async def test_stop_on_exit_leaves_a_session_that_ended_alone(tmp_path: Path) -> None:
    log = tmp_path / "signals"

    def answer(path: str, token: str) -> Answer:
        return GONE if log.exists() else acknowledgement(interval=1)

    stopper = RecordingStopper()
    status = await run_in_process(answer, recorder(log), stopper)
    assert (status, stopper.stops) == (124, 0)


FORBIDDEN = (
    'sessions.xg2g.io "s" is forbidden: User "u" cannot patch resource "sessions" in API group'
    ' "xg2g.io" in the namespace "default"'
)


class RefusingRest:
    """A ``Rest`` whose every request fails with *error*."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    async def request(self, *args: object, **kwargs: object) -> dict[str, object]:
        raise self._error


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            error_for_status(403, FORBIDDEN),
            f"{FORBIDDEN} (--stop-on-exit needs patch on sessions in the session's namespace)",
        ),
        (
            error_for_status(404, 'sessions.xg2g.io "s" not found'),
            'session "s" not found in namespace "default"',
        ),
    ],
)
async def test_a_stop_the_apiserver_refuses_says_why_in_a_sentence(
    error: Exception, says: str
) -> None:
    async with ApiClient(Configuration(host="https://apiserver.example:6443")) as api:
        stopper = ApiserverStop(api, Sessions(RefusingRest(error), "default"), "s")  # type: ignore[arg-type]
        with pytest.raises(StopFailed) as refused:
            await stopper.stop()
    assert str(refused.value) == says


def test_stop_on_exit_without_a_cluster_runs_nothing(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with stub_api(always(acknowledgement())) as api:
        result = run(
            api.url, "--stop-on-exit", "--", "touch", str(ran),
            KUBECONFIG=str(tmp_path / "missing"),
        )  # fmt: skip
    assert result.returncode == 2
    assert not ran.exists()
    assert api.requests == []
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: --stop-on-exit stops the session through the apiserver,"
        f" and there is none (no kubeconfig at {tmp_path / 'missing'}): set KUBECONFIG, or"
        " run it in a Pod"
    ]


def test_stop_on_exit_needs_the_sessions_name() -> None:
    with stub_api(always(acknowledgement())) as api:
        result = subprocess.run(
            [PYTHON, "-m", "session_operator", "heartbeat", "--session-id", "6f1c",
             "--stop-on-exit", "--allow-http", "--url", api.url, "--", "true"],
            env=environment(SESSION_API_TOKEN="t"),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "session-operator heartbeat: --stop-on-exit stops the session by its name: give"
        " [NAMESPACE/]NAME, not --session-id"
    ]
