"""Reading and writing whole Kafka topics in tests: every committed record, in one call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, KafkaProducer

from streaming.config import Settings
from streaming.core.events import Event
from streaming.kafka_clients import kafka_python_config
from streaming.topics import topic_partitions

Record = tuple[int, int, int, bytes | None, bytes]
"""(partition, offset, timestamp ms, key, value)"""


def send_raw(
    settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> None:
    """Records (key, value) as given, in order; a value of None is a tombstone."""
    producer = KafkaProducer(
        **kafka_python_config(settings.kafka),
        acks="all",
        max_in_flight_requests_per_connection=1,
        linger_ms=20,
    )
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def send_events(settings: Settings, topic: str, events: Iterable[Event]) -> None:
    """Events as the producer writes them (JSON, keyed by user), in the order given."""
    send_raw(
        settings,
        topic,
        [(str(e.user_id).encode(), json.dumps(e._asdict()).encode()) for e in events],
    )


def read_topic(settings: Settings, topic: str, timeout_s: float = 60) -> list[Record]:
    """Every committed record now in `topic`: (partition, offset, timestamp ms, key, value).

    Reads until each partition's position reaches its last stable offset (the consumer moves
    past transaction markers and aborted batches without returning records); a slow poll is
    retried, and a topic that cannot be read to its end within `timeout_s` is an error.
    """
    consumer = KafkaConsumer(
        **kafka_python_config(settings.kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_poll_records=50_000,
    )
    partitions = topic_partitions(settings.kafka, [topic])
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records = []
    deadline = time.monotonic() + timeout_s
    while behind := {tp: gap for tp in partitions if (gap := end[tp] - consumer.position(tp)) > 0}:
        assert time.monotonic() < deadline, (
            f"{topic}: still behind its end after {timeout_s}s: {behind}"
        )
        for tp, batch in consumer.poll(timeout_ms=500).items():
            records += [(tp.partition, m.offset, m.timestamp, m.key, m.value) for m in batch]
    consumer.close()
    return records


def end_offsets(settings: Settings, topic: str) -> dict[str, int]:
    """The end offset of each partition of `topic`, keyed "topic:partition" as the trainer
    keys its positions."""
    consumer = KafkaConsumer(**kafka_python_config(settings.kafka))
    try:
        ends = consumer.end_offsets(topic_partitions(settings.kafka, [topic]))
    finally:
        consumer.close()
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in ends.items()}
