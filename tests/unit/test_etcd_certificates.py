"""The local etcd's certificates: private files, a server certificate for 127.0.0.1, and
a server that wants a client certificate takes the harness's and refuses a client without
one (the same TLS handshake etcd's ``--client-cert-auth`` makes)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.etcd_certificates import EtcdCertificates, write_etcd_certificates

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> EtcdCertificates:
    """One set, made once for the module."""
    return write_etcd_certificates(tmp_path_factory.mktemp("pki") / "etcd")


def test_every_file_is_readable_by_its_owner_only(certificates: EtcdCertificates) -> None:
    files = sorted(certificates.ca.parent.iterdir())
    assert [path.name for path in files] == [
        "ca.crt",
        "client.crt",
        "client.key",
        "server.crt",
        "server.key",
    ], "the CA's key is not kept"
    assert {path.stat().st_mode & 0o777 for path in files} == {0o600}
    assert certificates.ca.parent.stat().st_mode & 0o777 == 0o700


def test_the_server_certificate_names_loopback_and_serves_and_dials_peers(
    certificates: EtcdCertificates,
) -> None:
    server = x509.load_pem_x509_certificate(certificates.server_certificate.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_the_client_certificate_is_for_clients_only(certificates: EtcdCertificates) -> None:
    client = x509.load_pem_x509_certificate(certificates.client_certificate.read_bytes())
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = x509.load_pem_x509_certificate(certificates.ca.read_bytes())
    client.verify_directly_issued_by(ca)


def test_a_server_wanting_client_certificates_takes_the_harness_client(
    certificates: EtcdCertificates,
) -> None:
    with server_wanting_client_certificates(certificates) as port:
        assert handshake(port, certificates.client_context()) == "ok"


def test_a_server_wanting_client_certificates_refuses_a_client_without_one(
    certificates: EtcdCertificates,
) -> None:
    without_certificate = ssl.create_default_context(cafile=str(certificates.ca))
    with server_wanting_client_certificates(certificates) as port:
        assert handshake(port, without_certificate) == "refused"


@contextmanager
def server_wanting_client_certificates(certificates: EtcdCertificates) -> Iterator[int]:
    """A TLS server on loopback with etcd's pair, requiring a client certificate of the CA;
    it answers "ok" to a client that completes the handshake. Its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificates.server_certificate), str(certificates.server_key))
    context.load_verify_locations(str(certificates.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(timeout=10)
        listener.close()


def handshake(port: int, context: ssl.SSLContext) -> str:
    """What the server says to a client with *context*: "ok", or "refused"."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        try:
            return tls.recv(2).decode() or "refused"
        except (ssl.SSLError, ConnectionResetError):
            return "refused"
