"""Kafka topics walkstream reads and writes: created on first use with the configured layout."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streaming.config import KafkaSettings
from streaming.errors import RuntimeServiceError
from streaming.kafka_clients import kafka_admin

__all__ = ["ensure_topics", "topic_partitions"]

# Flink's Kafka sink stamps each record with its element's timestamp: for the job that is the
# event time of the rating behind it, years old in a replay of history, and time-based
# retention deletes such records within minutes of their writing. Topics the job writes keep
# the broker's append time instead; event times travel in the records' values. So does the
# ratings topic when walkstream creates it: the job rejects an event timed more than
# `events.max_ahead_s` after its record's timestamp, which should be the broker's clock, not
# whatever a producer sets.
_TIMESTAMP_TYPE = "message.timestamp.type"
_APPEND_TIME = {_TIMESTAMP_TYPE: "LogAppendTime"}
# The users topic holds each user's whole recent state in every record, keyed by user:
# compacted, it keeps every user's newest record for as long as the topic exists, so a
# reader that lost its own state rebuilds every user from the topic's beginning.
_COMPACTED = {"cleanup.policy": "compact"}


def _written_by_job(settings: KafkaSettings) -> set[str]:
    topics = settings.topics
    return {topics.dead_letter, topics.late, topics.samples, topics.items, topics.walk_hops,
            topics.counts, topics.users}  # fmt: skip


def ensure_topics(settings: KafkaSettings, names: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; return the names it created. Existing topics
    the job writes are switched to append time if they were created without it (the ratings
    topic, created with it, is left as its owner made it)."""
    admin = kafka_admin(settings)
    job_outputs = _written_by_job(settings)
    try:
        existing = set(admin.list_topics())
        _keep_append_time(admin, sorted(set(names) & existing & job_outputs))
        missing = sorted(set(names) - existing)
        created = []
        for name in missing:
            stamped = job_outputs | {settings.topics.ratings}
            configs = dict(_APPEND_TIME) if name in stamped else {}
            if name == settings.topics.users:
                configs |= _COMPACTED
            topic = NewTopic(
                name, settings.partitions, settings.replication_factor, topic_configs=configs
            )
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # created by someone else in the meantime: that is what we wanted
        return created
    finally:
        admin.close()


def _keep_append_time(admin: KafkaAdminClient, names: list[str]) -> None:
    """Set append time on topics created with another timestamp type (by an older walkstream,
    or by hand); only that one setting changes, the topics' other settings stay."""
    if not names:
        return
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, {_TIMESTAMP_TYPE: None}) for name in names],
        config_filter="all",
    )["topic"]
    stale = [
        name for name in names
        if described[name][_TIMESTAMP_TYPE]["value"] != _APPEND_TIME[_TIMESTAMP_TYPE]
    ]  # fmt: skip
    if not stale:
        return
    results = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, dict(_APPEND_TIME)) for name in stale]
    )["topic"]
    failed = {name: result for name, result in results.items() if result != "OK"}
    if failed:
        raise RuntimeServiceError(
            f"could not set {_TIMESTAMP_TYPE}=LogAppendTime on {failed}: without it the broker's "
            "time-based retention deletes replayed records within minutes. Set it with "
            "kafka-configs.sh --alter --entity-type topics --entity-name TOPIC --add-config "
            f"{_TIMESTAMP_TYPE}=LogAppendTime, or grant this client ALTER_CONFIGS on the topics"
        )


def topic_partitions(settings: KafkaSettings, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the named topics, asked of the broker directly.

    A consumer's own metadata (`partitions_for_topic`) can be missing or partial right after a
    failed refresh; a reader that assigned from it would silently skip partitions.
    """
    wanted = list(names)
    admin = kafka_admin(settings)
    try:
        described = admin.describe_topics(wanted)
    finally:
        admin.close()
    partitions = []
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise RuntimeServiceError(
                f"Kafka topic {topic['name']!r} is unavailable (error code "
                f"{topic['error_code']}): is it created, and is the broker healthy?"
            )
        partitions += [
            TopicPartition(topic["name"], p["partition_index"]) for p in topic["partitions"]
        ]
    return sorted(partitions)
