"""The samples the README applies: the ``make run NODE=1`` Pod stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PORT = "8080"


def test_the_node_samples_pod_ends_with_exit_code_0_on_sigterm() -> None:
    # A container that dies of SIGTERM ends as `Error`: on every normal stop of the session.
    sample = yaml.safe_load((REPO / "hack/samples/session-with-pod.yaml").read_text())
    container = sample["spec"]["template"]["spec"]["containers"][0]
    program, *arguments = container["command"]
    assert program == "python3"
    assert str(container["readinessProbe"]["httpGet"]["port"]) == SAMPLE_PORT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The same program, on a free port of this machine instead of the Pod's own 8080.
    arguments = [argument.replace(SAMPLE_PORT, str(port)) for argument in arguments]
    server = subprocess.Popen([sys.executable, *arguments], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the sample's server never listened"
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0, server.communicate()[1]
    finally:
        server.kill()
        server.wait()
