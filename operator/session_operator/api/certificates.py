"""The heartbeat API's TLS certificate, reloaded when its files change.

cert-manager (or an admin) rotates the certificate in its Secret; the kubelet then swaps
the mounted files. The API keeps serving with the old pair until the new one loads, and
loads it before the old one lapses: every new connection gets the current certificate.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

RELOAD_CHECK_SECONDS = 10.0

logger = logging.getLogger(__name__)


class ReloadingCertificate:
    """An SSL context for the server, serving the pair at *cert_file* and *key_file*."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self._cert_file = cert_file
        self._key_file = key_file
        self._loaded = self._read()
        self._current = self._load()
        # The server's context hands each handshake to the current pair's context (a
        # context whose load failed halfway is never used: loads go into a new one).
        self.context = self._load()
        self.context.sni_callback = self._use_current

    def _use_current(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        connection.context = self._current

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cert_file, self._key_file)
        return context

    def reload_if_changed(self) -> bool:
        """Load the files again if their contents changed; True when the new pair is in use.

        A pair that does not load (one file swapped, the other not yet) is logged and tried
        again at the next check; the current pair stays in use meanwhile.
        """
        try:
            current = self._read()
        except OSError as error:
            logger.warning("TLS certificate not reloaded: %s", error)
            return False
        if current == self._loaded:
            return False
        try:
            self._current = self._load()
        except (OSError, ssl.SSLError) as error:
            logger.warning("TLS certificate not reloaded yet: %s", error)
            return False
        self._loaded = current
        logger.info("TLS certificate reloaded from %s", self._cert_file)
        return True

    async def watch(self, interval: float = RELOAD_CHECK_SECONDS) -> None:
        """Check the files every *interval* seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    def _read(self) -> tuple[bytes, bytes]:
        return self._cert_file.read_bytes(), self._key_file.read_bytes()
