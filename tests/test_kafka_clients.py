"""Kafka security settings: what is refused, and what each client library is told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streaming.config import KafkaSettings, load_settings
from streaming.errors import ConfigError
from streaming.kafka_clients import (
    flink_table_options,
    java_client_properties,
    kafka_python_config,
    librdkafka_config,
)

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
SHADED = "org.apache.flink.kafka.shaded.org.apache.kafka.common.security."


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    files = {"ssl_cafile": CERT, "ssl_certfile": CERT, "ssl_keyfile": KEY}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: str(tmp_path / name) for name in files}


def _kafka(**values: Any) -> KafkaSettings:
    return load_settings(overrides={"kafka": values}).kafka


def _refused(**values: Any) -> str:
    with pytest.raises(ConfigError) as error:
        _kafka(**values)
    return str(error.value)


SASL = {"sasl_mechanism": "PLAIN", "sasl_username": "walk", "sasl_password": "pa'ss\"w\\rd"}


def test_plaintext_by_default_tells_every_client_only_where() -> None:
    kafka = _kafka()
    assert kafka.security_protocol == "PLAINTEXT"
    assert kafka_python_config(kafka) == {
        "bootstrap_servers": "127.0.0.1:29092",
        "security_protocol": "PLAINTEXT",
    }
    assert librdkafka_config(kafka) == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "PLAINTEXT",
    }
    assert java_client_properties(kafka) == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "PLAINTEXT",
    }


def test_sasl_ssl_with_a_client_certificate_reaches_every_client(pem: dict[str, str]) -> None:
    kafka = _kafka(security_protocol="SASL_SSL", **SASL, **pem)
    password = SASL["sasl_password"]
    assert kafka_python_config(kafka) == {
        "bootstrap_servers": "127.0.0.1:29092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "walk",
        "sasl_plain_password": password,
        "ssl_cafile": pem["ssl_cafile"],
        "ssl_certfile": pem["ssl_certfile"],
        "ssl_keyfile": pem["ssl_keyfile"],
    }
    assert librdkafka_config(kafka) == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "walk",
        "sasl.password": password,
        "ssl.ca.location": pem["ssl_cafile"],
        "ssl.certificate.location": pem["ssl_certfile"],
        "ssl.key.location": pem["ssl_keyfile"],
    }
    assert java_client_properties(kafka) == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        # JAAS quoting: the quote and the backslash escaped
        "sasl.jaas.config": f"{SHADED}plain.PlainLoginModule required "
        'username="walk" password="pa\'ss\\"w\\\\rd";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.certificates": CERT,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": CERT,
        "ssl.keystore.key": KEY,
    }
    options = flink_table_options(kafka)
    assert options["properties.security.protocol"] == "SASL_SSL"
    assert options.keys() == {f"properties.{key}" for key in java_client_properties(kafka)}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_uses_the_shaded_scram_login_module(mechanism: str) -> None:
    kafka = _kafka(security_protocol="SASL_PLAINTEXT", **SASL | {"sasl_mechanism": mechanism})
    jaas = java_client_properties(kafka)["sasl.jaas.config"]
    assert jaas.startswith(f"{SHADED}scram.ScramLoginModule required ")
    assert librdkafka_config(kafka)["sasl.mechanisms"] == mechanism
    assert kafka_python_config(kafka)["sasl_mechanism"] == mechanism
    assert "ssl_cafile" not in kafka_python_config(kafka)


def test_ssl_without_a_ca_file_trusts_the_system_store() -> None:
    kafka = _kafka(security_protocol="SSL")
    assert java_client_properties(kafka) == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "SSL",
    }


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs kafka.sasl_mechanism, kafka.sasl_username"),
        (
            {"security_protocol": "SASL_PLAINTEXT", **SASL, "sasl_password": None},
            "needs kafka.sasl_password",
        ),
        ({**SASL}, "security_protocol PLAINTEXT does not use SASL"),
        ({"security_protocol": "SSL", "sasl_username": "walk"}, "kafka.sasl_username set"),
        ({"security_protocol": "SASL_SSL", **SASL, "sasl_mechanism": "GSSAPI"}, "PLAIN"),
        ({"security_protocol": "TLS"}, "SASL_SSL"),
        ({"sasl_username": ""}, "at least 1 character"),
    ],
)
def test_sasl_settings_a_client_would_ignore_or_miss_are_refused(
    values: dict[str, Any], says: str
) -> None:
    assert says in _refused(**values)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_tls_are_refused(protocol: str, pem: dict[str, str]) -> None:
    sasl = SASL if protocol.startswith("SASL") else {}
    message = _refused(security_protocol=protocol, ssl_cafile=pem["ssl_cafile"], **sasl)
    assert f"kafka.ssl_cafile set, but security_protocol {protocol} does not use TLS" in message


def test_a_certificate_needs_its_key_and_a_key_its_certificate(pem: dict[str, str]) -> None:
    for name in ("ssl_certfile", "ssl_keyfile"):
        message = _refused(security_protocol="SSL", **{name: pem[name]})
        assert "needs both kafka.ssl_certfile and ssl_keyfile" in message


def test_tls_files_must_exist_and_hold_what_they_are_for(
    pem: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.pem"
    assert "cannot read" in _refused(security_protocol="SSL", ssl_cafile=str(missing))
    assert "holds no PEM certificate" in _refused(
        security_protocol="SSL", ssl_cafile=pem["ssl_keyfile"]
    )
    for header, says in [
        ("RSA PRIVATE KEY", "openssl pkcs8 -topk8 -nocrypt"),
        ("ENCRYPTED PRIVATE KEY", "is encrypted"),
    ]:
        key = tmp_path / "key.pem"
        key.write_text(f"-----BEGIN {header}-----\nMIIE\n-----END {header}-----\n")
        message = _refused(
            security_protocol="SSL", ssl_certfile=pem["ssl_certfile"], ssl_keyfile=str(key)
        )
        assert says in message


def test_the_password_is_never_printed(tmp_path: Path) -> None:
    secret = "never-print-me"
    environment = {
        "WALKSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "WALKSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "WALKSTREAM_KAFKA__SASL_USERNAME": "walk",
        "WALKSTREAM_KAFKA__SASL_PASSWORD": secret,
    }
    shown = subprocess.run(
        [sys.executable, "-m", "streaming.cli", "config"],
        env=environment | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert secret not in shown
    kafka = json.loads(shown)["kafka"]
    assert kafka["sasl_password"] == "**********"
    assert kafka["sasl_mechanism"] == "SCRAM-SHA-512"
    # nor in a refusal that names the field
    refused = _refused(security_protocol="PLAINTEXT", sasl_password=secret)
    assert "kafka.sasl_password" in refused
    assert secret not in refused
