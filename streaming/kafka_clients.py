"""How each Kafka client library is told to connect: the one place `KafkaSettings` becomes
client configuration, so the job's sources and sinks, the producer, the trainer's consumers
and the admin that creates topics all connect the same way.

Three libraries, three dialects: kafka-python (admin, trainer, demo), librdkafka through
confluent-kafka (the producer), and the Java client inside the Flink connector (the job).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from streaming.config import KafkaSettings
from streaming.errors import RuntimeServiceError

__all__ = [
    "flink_table_options",
    "java_client_properties",
    "kafka_admin",
    "kafka_python_config",
    "librdkafka_config",
]

# The Flink connector jar (flink-sql-connector-kafka) shades the Kafka client: a JAAS login
# module must be named by its shaded class, or the job fails to find it.
_SHADED = "org.apache.flink.kafka.shaded."
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _sasl(kafka: KafkaSettings) -> tuple[str, str, str] | None:
    """(mechanism, username, password) when the protocol is SASL_*; KafkaSettings requires
    all three then, and refuses them otherwise."""
    if kafka.sasl_mechanism is None or kafka.sasl_username is None or kafka.sasl_password is None:
        return None
    return kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password.get_secret_value()


def kafka_python_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient, KafkaConsumer and
    KafkaProducer."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if sasl := _sasl(kafka):
        mechanism, username, password = sasl
        config |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    if kafka.ssl_cafile is not None:
        config["ssl_cafile"] = str(kafka.ssl_cafile)
    if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
        config |= {"ssl_certfile": str(kafka.ssl_certfile), "ssl_keyfile": str(kafka.ssl_keyfile)}
    return config


def librdkafka_config(kafka: KafkaSettings) -> dict[str, str]:
    """Configuration properties for confluent-kafka's Producer (librdkafka)."""
    config = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if sasl := _sasl(kafka):
        mechanism, username, password = sasl
        config |= {
            "sasl.mechanisms": mechanism,
            "sasl.username": username,
            "sasl.password": password,
        }
    if kafka.ssl_cafile is not None:
        config["ssl.ca.location"] = str(kafka.ssl_cafile)
    if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
        config |= {
            "ssl.certificate.location": str(kafka.ssl_certfile),
            "ssl.key.location": str(kafka.ssl_keyfile),
        }
    return config


def _jaas_quoted(value: str) -> str:
    """A JAAS option value: double-quoted, with quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_client_properties(kafka: KafkaSettings) -> dict[str, str]:
    """Properties of the Java Kafka client in the Flink connector (sources and sinks).

    Certificates and the key go in as PEM text, not file paths: the properties travel with
    the job, so a job submitted to a cluster (`flink run`) connects from TaskManagers that do
    not have the files. The Java client hides the key and the JAAS config (which holds the
    password) in its logs, and Flink hides options named like `jaas.config`.
    """
    properties = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if sasl := _sasl(kafka):
        mechanism, username, password = sasl
        module = _SHADED + _LOGIN_MODULES[mechanism]
        properties |= {
            "sasl.mechanism": mechanism,
            "sasl.jaas.config": f"{module} required username={_jaas_quoted(username)} "
            f"password={_jaas_quoted(password)};",
        }
    if kafka.ssl_cafile is not None:
        properties |= {
            "ssl.truststore.type": "PEM",
            "ssl.truststore.certificates": kafka.ssl_cafile.read_text(),
        }
    if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
        properties |= {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": kafka.ssl_certfile.read_text(),
            "ssl.keystore.key": kafka.ssl_keyfile.read_text(),
        }
    return properties


def flink_table_options(kafka: KafkaSettings) -> dict[str, str]:
    """`java_client_properties` as options of a Flink SQL Kafka table (`properties.` + key)."""
    return {f"properties.{key}": value for key, value in java_client_properties(kafka).items()}


class _LoggedErrors(logging.Handler):
    """Exceptions kafka-python logs while it retries: its bootstrap retries a refused login
    or a failed TLS handshake until its timeout, then raises only that it timed out."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args.values() if isinstance(record.args, dict) else record.args or ()
        self.errors += [arg for arg in args if isinstance(arg, BaseException)]


@contextmanager
def _explained_bootstrap(kafka: KafkaSettings) -> Iterator[None]:
    logged = _LoggedErrors()
    logger = logging.getLogger("kafka")
    logger.addHandler(logged)
    try:
        yield
    except KafkaTimeoutError:
        raise RuntimeServiceError(_bootstrap_failure(kafka, logged.errors)) from None
    finally:
        logger.removeHandler(logged)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """An error and the errors it was raised from or while handling (kafka-python wraps a
    failed TLS handshake in a connection error)."""
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _bootstrap_failure(kafka: KafkaSettings, errors: list[BaseException]) -> str:
    servers, protocol = kafka.bootstrap_servers, kafka.security_protocol
    for error in reversed([chained for logged in errors for chained in _chain(logged)]):
        if isinstance(error, SaslAuthenticationFailedError):
            return (
                f"Kafka at {servers} refused the SASL login of {kafka.sasl_username!r} "
                f"({kafka.sasl_mechanism}): check kafka.sasl_username, kafka.sasl_password "
                "and kafka.sasl_mechanism"
            )
        if isinstance(error, ssl.SSLError):
            detail = getattr(error, "verify_message", None) or error.reason or error
            reason = str(detail).replace("\n", " ")
            return (
                f"TLS with Kafka at {servers} failed ({reason}): check that kafka.ssl_cafile "
                "signs the brokers' certificates and that they name the host you connect to, "
                "and kafka.ssl_certfile/ssl_keyfile if the brokers require a client certificate"
            )
    if _sasl(kafka) is not None:
        # a refusal the broker sent as it closed the connection can be lost with it
        return (
            f"no Kafka broker answered at {servers} over {protocol}, or it refused the SASL "
            f"login of {kafka.sasl_username!r}: check that the brokers run and listen for "
            f"{protocol} there, and kafka.bootstrap_servers, kafka.security_protocol, "
            "kafka.sasl_username, kafka.sasl_password and kafka.sasl_mechanism"
        )
    return (
        f"no Kafka broker answered at {servers} over {protocol}: check that the brokers run "
        f"and listen for {protocol} there (kafka.bootstrap_servers, kafka.security_protocol)"
    )


# A broker that refuses a login sometimes closes the connection before its answer is read:
# that attempt looks like a lost connection. Retrying at least once a second gives the
# bootstrap's 30 s a few dozen attempts, so one that reads the refusal is all but certain.
_ADMIN_RECONNECT_BACKOFF_MAX_MS = 1000


def kafka_admin(kafka: KafkaSettings) -> KafkaAdminClient:
    """A kafka-python admin client; a cluster it cannot connect to raises one line that says
    why (refused login, TLS failure, nobody answering) instead of a bare timeout."""
    with _explained_bootstrap(kafka):
        return KafkaAdminClient(
            **kafka_python_config(kafka), reconnect_backoff_max_ms=_ADMIN_RECONNECT_BACKOFF_MAX_MS
        )
