"""The API's certificate is reloaded when its files change: new connections get the new one."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from harness.certificates import self_signed_certificate
from session_operator.api.certificates import ReloadingCertificate
from session_operator.api.connections import ConnectionCount
from session_operator.api.server import HANDLER_OPTIONS, GuardedSite, create_app


def pair(directory: Path) -> tuple[Path, Path]:
    directory.mkdir()
    return self_signed_certificate(directory)


async def handshake(port: int, trusted: Path) -> bool:
    """Whether a TLS client trusting only *trusted* completes a handshake with the server."""
    context = ssl.create_default_context(cafile=str(trusted))
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except ssl.SSLError:
        return False
    writer.close()
    return True


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[tuple[int, ReloadingCertificate, Path]]:
    old_cert, old_key = pair(tmp_path / "old")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(old_cert, live / "tls.crt")
    shutil.copy(old_key, live / "tls.key")
    certificate = ReloadingCertificate(live / "tls.crt", live / "tls.key")
    runner = web.AppRunner(create_app(lambda: True), **HANDLER_OPTIONS)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, certificate.context, ConnectionCount())
    await site.start()
    try:
        yield site.port, certificate, tmp_path
    finally:
        await runner.cleanup()


async def test_a_rotated_certificate_serves_new_connections(
    serving: tuple[int, ReloadingCertificate, Path],
) -> None:
    port, certificate, directory = serving
    old_cert = directory / "old" / "tls.crt"
    new_cert, new_key = pair(directory / "new")
    assert await handshake(port, old_cert)
    assert certificate.reload_if_changed() is False  # nothing changed yet

    shutil.copy(new_key, directory / "live" / "tls.key")
    shutil.copy(new_cert, directory / "live" / "tls.crt")
    assert certificate.reload_if_changed() is True
    assert await handshake(port, new_cert)
    assert not await handshake(port, old_cert)


async def test_a_half_rotated_pair_keeps_the_old_one_until_both_files_match(
    serving: tuple[int, ReloadingCertificate, Path],
) -> None:
    port, certificate, directory = serving
    new_cert, new_key = pair(directory / "new")
    shutil.copy(new_cert, directory / "live" / "tls.crt")  # the key is still the old one
    assert certificate.reload_if_changed() is False
    assert await handshake(port, directory / "old" / "tls.crt")
    shutil.copy(new_key, directory / "live" / "tls.key")
    assert certificate.reload_if_changed() is True
    assert await handshake(port, new_cert)
