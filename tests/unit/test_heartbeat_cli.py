"""``session-operator heartbeat`` from a terminal: what it needs, where it finds it, and what
it says when something is missing or unreachable."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from session_operator.heartbeat_cli import Usage, add_heartbeat_command, session_address
from tests.unit.test_cli_errors import session_operator


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


def test_the_heartbeat_command_starts_without_kopf_or_the_kubernetes_client() -> None:
    # They take a second or more to load; a Ctrl-C meanwhile would meet Python's default.
    script = (
        "import sys\n"
        "from session_operator.__main__ import main\n"
        "code = main(['heartbeat', 'default/s', '--token', 't'])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes_asyncio'})\n"
        "print(code, loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "2 []", result.stderr
