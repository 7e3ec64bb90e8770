"""Kafka sources and sinks of the job, built from settings (no addresses or credentials in
job code)."""

from __future__ import annotations

from pyflink.common.serialization import SerializationSchema, SimpleStringSchema
from pyflink.datastream.connectors.kafka import (
    DeliveryGuarantee,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)

from streaming.config import Settings
from streaming.kafka_clients import java_client_properties

__all__ = ["text_sink", "text_source"]


def text_source(
    settings: Settings,
    topic: str,
    group_id: str,
    start: KafkaOffsetsInitializer,
    until: KafkaOffsetsInitializer | None,
) -> KafkaSource:
    """UTF-8 record values of `topic` from `start`; bounded when `until` is given."""
    builder = KafkaSource.builder()
    for key, value in java_client_properties(settings.kafka).items():
        builder = builder.set_property(key, value)
    builder = (
        builder.set_topics(topic)
        .set_group_id(group_id)
        .set_starting_offsets(start)
        .set_value_only_deserializer(SimpleStringSchema())
    )
    if until is not None:
        builder = builder.set_bounded(until)
    return builder.build()


# Brokers cap transactions at transaction.max.timeout.ms (15 min by default).
_TRANSACTION_TIMEOUT_MS = "900000"


def text_sink(
    settings: Settings,
    topic: str,
    exactly_once: bool = False,
    key: SerializationSchema | None = None,
) -> KafkaSink:
    """UTF-8 values to `topic`, with `key`'s bytes as their keys (none without it).

    Exactly once: records become visible (to read_committed consumers) when the checkpoint
    that covers them completes. Otherwise at least once: visible at once, and a restart may
    repeat records written since the last checkpoint.
    """
    builder = KafkaSink.builder()
    for name, value in java_client_properties(settings.kafka).items():
        builder = builder.set_property(name, value)
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(SimpleStringSchema())
    )
    if key is not None:
        serializer = serializer.set_key_serialization_schema(key)
    builder = builder.set_record_serializer(serializer.build())
    if exactly_once:
        builder = (
            builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(f"{settings.stream.group_id}-{topic}")
            .set_property("transaction.timeout.ms", _TRANSACTION_TIMEOUT_MS)
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()
