"""Every walkstream Kafka client against a broker that requires SASL_SSL: TLS with a
self-signed CA made here, a client certificate, and a SASL/PLAIN login."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streaming.config import Settings
from streaming.errors import RuntimeServiceError
from streaming.producer import RatingProducer
from streaming.topics import ensure_topics
from tests.job.jobs import final_counts, job_world
from tests.kafka_records import read_topic, send_raw
from tests.ports import free_port
from tests.secured_kafka import PASSWORD, USER, Certificates, SecuredKafkaBroker, make_certificates

pytestmark = pytest.mark.integration


def _security(certificates: Certificates, **changes: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_username": USER,
        "sasl_password": PASSWORD,
        "ssl_cafile": str(certificates.ca),
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
        **changes,
    }


class SecuredStack:
    def __init__(self, make: Callable[..., Settings], port: int, certificates: Certificates):
        self._make = make
        self.port = port
        self.certificates = certificates
        self.settings = self.client(certificates)

    def client(self, certificates: Certificates, **changes: str) -> Settings:
        """Settings of a client of the SASL_SSL listener."""
        kafka = {"bootstrap_servers": f"127.0.0.1:{self.port}"}
        return self._make(kafka=kafka | _security(certificates, **changes))


@pytest.fixture(scope="module")
def secured(
    stack_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    certificates = make_certificates(tmp_path_factory.mktemp("certificates"))
    port = free_port()
    broker = SecuredKafkaBroker(stack_settings(), port, certificates)
    broker.start(report=lambda _: None)
    try:
        yield SecuredStack(stack_settings, port, certificates)
    finally:
        broker.stop(report=lambda _: None)


def test_topics_producer_and_consumer_over_sasl_ssl(secured: SecuredStack, unique: str) -> None:
    settings = secured.settings
    assert ensure_topics(settings.kafka, [unique]) == [unique]
    events = [
        {"user_id": user, "item_id": 100 + k, "rating": 4.5, "event_time": 1_000 + k}
        for user in range(1, 4)
        for k in range(5)
    ]
    with RatingProducer(settings, unique) as producer:
        for event in events:
            producer.send(event)
    received = [json.loads(value) for *_, value in read_topic(settings, unique)]
    assert sorted(received, key=lambda e: (e["user_id"], e["event_time"])) == events


def test_the_job_reads_and_writes_exactly_once_over_sasl_ssl(
    secured: SecuredStack, unique: str, tmp_path: Path
) -> None:
    settings = secured.settings
    security: dict[str, Any] = {
        f"kafka.{key}": value for key, value in _security(secured.certificates).items()
    }
    world = job_world(settings, unique, tmp_path, **security)
    with RatingProducer(world.settings) as producer:
        for k, item in enumerate([10, 11, 12, 11]):
            producer.send({"user_id": 7, "item_id": item, "rating": 5.0, "event_time": 1_000 + k})
    send_raw(world.settings, world.topic("ratings"), [(b"7", b"not an event")])
    world.run("--from", "earliest", "--until", "latest")

    assert final_counts(world.settings) == {(10, 11): 1, (11, 12): 1, (12, 11): 1}
    dead = [json.loads(v) for *_, v in read_topic(world.settings, world.topic("dead_letter"))]
    assert len(dead) == 1
    assert dead[0]["reason"]


@pytest.mark.parametrize(
    ("wrong", "says", "names"),
    [
        ({"sasl_password": "not the password"}, "refused the SASL login", "kafka.sasl_password"),
        ("untrusted CA", "TLS with Kafka at", "kafka.ssl_cafile"),
    ],
)
def test_a_wrong_password_or_ca_fails_in_one_line_that_says_what_to_fix(
    secured: SecuredStack, unique: str, wrong: dict[str, str] | str, says: str, names: str
) -> None:
    certificates = secured.certificates
    if isinstance(wrong, dict):
        settings = secured.client(certificates, **wrong)
    else:  # a CA that did not sign the broker's certificate: the client's own certificate
        settings = secured.client(certificates, ssl_cafile=str(certificates.client_cert))
    began = time.monotonic()
    with pytest.raises(RuntimeServiceError) as error:
        ensure_topics(settings.kafka, [unique])
    message = str(error.value)
    assert time.monotonic() - began < 60
    assert says in message
    assert names in message
    assert "\n" not in message
    assert PASSWORD not in message
    assert "not the password" not in message
