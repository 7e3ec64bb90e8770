"""A local broker with a SASL_SSL listener, and the certificates it needs, for tests.

The broker keeps its PLAINTEXT listener (controller and inter-broker traffic, and the
start-up probe) and adds a SASL_SSL one that requires a client certificate signed by a
self-signed CA made here, and SASL/PLAIN credentials defined in the listener's JAAS config.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from streaming.config import Settings
from streaming.runtime.services import KafkaBroker

USER = "walkstream"
PASSWORD = "s3cret 'quoted' \"pass\\word\""
"""Quotes and a backslash: the password must survive JAAS and Flink SQL quoting."""

_DAYS = "2"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    broker: Path
    """The broker's key and certificate in one PEM file (the Java PEM keystore format)."""
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(directory: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    """A PKCS#8 key and a certificate for it signed by directory's ca.pem."""
    key, request, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    (directory / f"{name}.ext").write_text(
        extensions + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.name, "-out", request.name,
             "-subj", subject, cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", request.name, "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", _DAYS, "-out", cert.name, "-extfile", f"{name}.ext",
             cwd=directory)  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A self-signed CA; a broker certificate for 127.0.0.1 and localhost; a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", _DAYS, "-subj", "/CN=walkstream test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    broker_cert, broker_key = _signed(
        directory,
        "broker",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=critical,digitalSignature,"
        "keyEncipherment\nextendedKeyUsage=serverAuth",
    )
    client_cert, client_key = _signed(
        directory,
        "client",
        "/CN=walkstream client",
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth",
    )
    broker = directory / "broker-keystore.pem"
    broker.write_text(broker_key.read_text() + broker_cert.read_text())
    return Certificates(directory / "ca.pem", broker, client_cert, client_key)


def _jaas_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SecuredKafkaBroker(KafkaBroker):
    """The local broker plus a SASL_SSL listener on `sasl_ssl_port` (PLAIN, client TLS auth
    required); `settings` (PLAINTEXT) still address the plain listener."""

    def __init__(self, settings: Settings, sasl_ssl_port: int, certificates: Certificates):
        super().__init__(settings)
        self.sasl_ssl_port = sasl_ssl_port
        self.certificates = certificates

    @property
    def ports(self) -> dict[str, int]:
        return {**super().ports, "sasl_ssl_port": self.sasl_ssl_port}

    def server_properties(self) -> dict[str, str]:
        properties = super().server_properties()
        listener = f"SASL_SSL://{self.host}:{self.sasl_ssl_port}"
        prefix = "listener.name.sasl_ssl."
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"user_{USER}={_jaas_quoted(PASSWORD)};"
        )
        return properties | {
            "listeners": f"{properties['listeners']},{listener}",
            "advertised.listeners": f"{properties['advertised.listeners']},{listener}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN",
            f"{prefix}plain.sasl.jaas.config": jaas,
            f"{prefix}ssl.client.auth": "required",
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(self.certificates.broker),
            f"{prefix}ssl.truststore.type": "PEM",
            f"{prefix}ssl.truststore.location": str(self.certificates.ca),
        }
