"""The certificates with which the local etcd takes no unauthenticated client.

Every control plane makes its own: a CA, etcd's certificate for 127.0.0.1 (it serves clients
and its peer port with it), and one client certificate, which the apiserver presents and so
does the harness when it asks etcd whether it is healthy. The CA's key is not kept: nothing
signs with it afterwards. Every file is written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID as Usage
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=365)
"""Long enough for any ``make run`` or soak; a control plane's next start makes new ones."""


@dataclass(frozen=True)
class EtcdCertificates:
    """The PEM files of one control plane's etcd: its CA, its own pair, the clients' pair."""

    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        """A TLS context for a client of this etcd: it trusts only this CA and presents the
        client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_certificate), str(self.client_key))
        return context


def write_etcd_certificates(directory: Path) -> EtcdCertificates:
    """Make a CA and etcd's server and client pairs in *directory* (made 0700 if missing)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("xg2g-etcd-ca")
    ca = (
        _valid_from(now, ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign_certificates=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    # The peer port serves with etcd's pair too, and a peer dials with it.
    server, server_key = _leaf(
        now, "etcd", (ca_name, ca_key), [Usage.SERVER_AUTH, Usage.CLIENT_AUTH], loopback
    )
    client, client_key = _leaf(
        now, "kube-apiserver-etcd-client", (ca_name, ca_key), [Usage.CLIENT_AUTH]
    )
    found = EtcdCertificates(
        ca=directory / "ca.crt",
        server_certificate=directory / "server.crt",
        server_key=directory / "server.key",
        client_certificate=directory / "client.crt",
        client_key=directory / "client.key",
    )
    _write_private(found.ca, ca.public_bytes(serialization.Encoding.PEM))
    _write_private(found.server_certificate, server.public_bytes(serialization.Encoding.PEM))
    _write_private(found.server_key, _key_bytes(server_key))
    _write_private(found.client_certificate, client.public_bytes(serialization.Encoding.PEM))
    _write_private(found.client_key, _key_bytes(client_key))
    return found


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _leaf(
    now: datetime.datetime,
    common_name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey],
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new key, and a certificate for it that *issuer* (its name and key) signs."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _valid_from(now, _name(common_name), issuer[0], key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1], hashes.SHA256()), key


def _valid_from(
    now: datetime.datetime,
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A minute back: a clock that steps back a little must not void it.
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, content: bytes) -> None:
    # Created 0600, so no other user can open it between its creation and a chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    path.chmod(0o600)  # an older file of the same name keeps its mode through O_CREAT
