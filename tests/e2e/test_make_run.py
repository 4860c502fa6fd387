"""``make run`` as a newcomer meets it (``python -m harness run``, what the target runs): the
README's "Try it" works, twice; a second ``make run`` and a stale ``KUBECONFIG`` are refused
in one line before anything starts; Ctrl-C stops it in a few seconds, saying what it stops,
even with a ``kubectl get -w`` open."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import toolchain
from harness.cluster import free_port
from tests.e2e.conftest import as_from_a_terminal
from tests.kubeconfigs import unreachable_kubeconfig

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = "A Session with spec.template stays"
"""How the lines ``make run`` prints for another terminal end (without a node)."""
CTRL_C_WITHIN_SECONDS = 3.0


def make_run(**env: str) -> subprocess.Popen[str]:
    """``python -m harness run`` with *env* and without KUBECONFIG (unless *env* sets it), in
    a process group of its own, as a terminal starts a foreground command."""
    base = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, **env},
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )


def ctrl_c(run: subprocess.Popen[str]) -> None:
    """What Ctrl-C in its terminal does: SIGINT to the whole foreground process group."""
    os.killpg(run.pid, signal.SIGINT)


def lines_until_ready(run: subprocess.Popen[str]) -> list[str]:
    """What *run* printed up to the last of its lines for another terminal."""
    assert run.stdout is not None
    printed: list[str] = []
    for line in run.stdout:
        printed.append(line.rstrip("\n"))
        if line.startswith(LAST_LINE):
            return printed
    raise AssertionError(f"make run ended early: {printed}, {run.communicate()[1]}")


def printed_kubeconfig(printed: list[str]) -> str:
    """The KUBECONFIG that ``make run`` told the user to export."""
    exports = [line.strip() for line in printed if "export KUBECONFIG=" in line]
    return exports[0].split("=", 1)[1]


def try_it_blocks() -> list[tuple[str, list[str]]]:
    """The fenced blocks of the README's "Try it": (language, lines), in order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks: list[tuple[str, list[str]]] = []
    inside = False
    for line in section.splitlines():
        if line.startswith("```"):
            if not inside:
                blocks.append((line[3:].strip(), []))
            inside = not inside
        elif inside:
            blocks[-1][1].append(line)
    return blocks


def try_it_commands() -> list[str]:
    """The shell commands of the README's "Try it", in order."""
    return [line for kind, lines in try_it_blocks() if kind == "sh" for line in lines if line]


def columns(header: str) -> list[str]:
    """The column names of a kubectl table's header line."""
    return re.split(r"\s{2,}", header.strip())


def test_make_run_prints_its_lines_once_listening_and_the_readme_try_it_works_twice(
    tmp_path: Path,
) -> None:
    port = free_port()
    run = make_run(XG2G_SESSION_API_PORT=str(port))
    try:
        printed = lines_until_ready(run)
        # By the time the lines are printed, the API they name answers.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        text = "\n".join(printed)
        assert f"heartbeat living-room -n default --url http://127.0.0.1:{port}" in text
        kubeconfig = printed_kubeconfig(printed)

        # The README's commands, word for word but for the paths make run printed and the
        # port this test chose; `get -w` watches until it is stopped.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "kubectl").symlink_to(toolchain().kubectl)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        script = [f"export KUBECONFIG={kubeconfig}"]
        for command in try_it_commands():
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if command.startswith("export KUBECONFIG="):
                continue
            if command.endswith(" -w") or command.endswith(" -v"):
                command = f"timeout 4 {command} || test $? -eq 124"
            elif "--once" in command:
                command = f"until {command}; do sleep 1; done"  # until the session has a lease
            script.append(command)

        def try_it() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip

        def session_uid() -> str:
            return subprocess.run(
                [toolchain().kubectl, f"--kubeconfig={kubeconfig}", "get", "session",
                 "living-room", "-n", "default", "-o", "jsonpath={.metadata.uid}"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout  # fmt: skip

        done = try_it()
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        assert "session.xg2g.io/living-room created" in done.stdout
        assert '"acknowledged":true' in done.stdout
        assert "default/living-room: lease until " in done.stdout
        # The README shows the columns `get sessions -A -w` prints.
        header = next(line for line in done.stdout.splitlines() if line.startswith("NAMESPACE"))
        shown = next(lines for kind, lines in try_it_blocks() if not kind)[0]
        assert columns(shown) == columns(header), (shown, header)

        # Trying it again starts a new session, not an `unchanged` one.
        first = session_uid()
        again = try_it()
        assert again.returncode == 0, (script, again.stdout, again.stderr)
        assert "session.xg2g.io/living-room created" in again.stdout
        assert "unchanged" not in again.stdout
        assert session_uid() != first
    finally:
        ctrl_c(run)
        run.communicate(timeout=60)


def test_ctrl_c_with_a_watch_open_stops_make_run_within_3_s_saying_what_it_stops() -> None:
    run = make_run(XG2G_SESSION_API_PORT=str(free_port()))
    assert run.stdout is not None
    kubectl = [
        str(toolchain().kubectl),
        f"--kubeconfig={printed_kubeconfig(lines_until_ready(run))}",
    ]
    subprocess.run(
        [*kubectl, "apply", "-f", str(REPO / "hack/samples/session.yaml")],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    # The README's own watch, open once it has printed the session's row.
    watch = subprocess.Popen(
        [*kubectl, "get", "sessions", "-A", "-w"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert watch.stdout is not None
        for row in watch.stdout:
            if "living-room" in row:
                break
        else:
            raise AssertionError("the watch ended before it showed the session")
        started = time.monotonic()
        ctrl_c(run)
        out, err = run.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        watch.kill()
        watch.wait()
    assert run.returncode == 130, err
    assert took <= CTRL_C_WITHIN_SECONDS, f"Ctrl-C took {took:.1f}s: {out}"
    assert "stopping the operator ..." in out
    assert "stopping the control plane (kube-controller-manager, kube-apiserver, etcd) ..." in out
    assert "Traceback" not in err


def test_a_second_make_run_says_in_one_line_that_another_holds_the_port() -> None:
    port = free_port()
    first = make_run(XG2G_SESSION_API_PORT=str(port))
    try:
        lines_until_ready(first)
        second = make_run(XG2G_SESSION_API_PORT=str(port))
        out, err = second.communicate(timeout=60)
    finally:
        ctrl_c(first)
        first.communicate(timeout=60)
    assert second.returncode == 1
    assert out == "", "the second make run started something"
    assert err.splitlines() == [
        f"error: another `make run` holds port {port} (its heartbeat API answers there): use"
        " that one, stop it, or choose another port with XG2G_SESSION_API_PORT"
    ]


def test_make_run_on_a_port_another_program_holds_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = make_run(XG2G_SESSION_API_PORT=str(port))
        out, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert out == "", "make run started something"
    assert err.splitlines() == [
        f"error: cannot listen on 127.0.0.1 port {port}: already in use by another program;"
        " choose another with XG2G_SESSION_API_PORT"
    ]


def test_make_run_with_a_kubeconfig_that_is_gone_names_it_in_one_line(tmp_path: Path) -> None:
    # What a stopped `make run` leaves in another terminal: its directory is removed.
    gone = tmp_path / "xg2g-controlplane-stopped" / "kubeconfig"
    run = make_run(KUBECONFIG=str(gone), XG2G_SESSION_API_PORT=str(free_port()))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert out == ""
    assert err.splitlines() == [
        f"error: KUBECONFIG={gone} names no file (a stopped `make run` removes its own):"
        " unset KUBECONFIG to start a local control plane, or point it at a kubeconfig"
    ]


def test_make_run_with_a_kubeconfig_whose_apiserver_is_down_names_it_in_one_line(
    tmp_path: Path,
) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    run = make_run(KUBECONFIG=str(kubeconfig), XG2G_SESSION_API_PORT=str(free_port()))
    out, err = run.communicate(timeout=60)  # no retry loop: it ends
    assert run.returncode == 1
    assert out == ""
    assert err.splitlines() == [
        f"error: the apiserver https://127.0.0.1:1 of KUBECONFIG={kubeconfig} does not answer"
        " (connection refused): start that cluster, or unset KUBECONFIG to start a local"
        " control plane"
    ]
