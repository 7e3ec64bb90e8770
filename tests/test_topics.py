"""Topic creation against a real broker: the job's outputs keep the broker's append time."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from streaming.config import Settings
from streaming.topics import ensure_topics

pytestmark = pytest.mark.integration

TIMESTAMP_TYPE = "message.timestamp.type"


def _topic_configs(admin: KafkaAdminClient, name: str) -> dict[str, str]:
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
    )
    return {key: entry["value"] for key, entry in described["topic"][name].items()}


def test_existing_job_outputs_are_switched_to_append_time_and_keep_their_other_settings(
    local_stack: Settings, unique: str
) -> None:
    kafka = local_stack.kafka.model_copy(
        update={
            "topics": local_stack.kafka.topics.model_copy(
                update={"ratings": f"{unique}.ratings", "samples": f"{unique}.samples"}
            )
        }
    )
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        retention = {"retention.ms": "123456789"}
        admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs=retention) for name in (
                kafka.topics.ratings, kafka.topics.samples)]
        )  # fmt: skip
        created = ensure_topics(kafka, [kafka.topics.ratings, kafka.topics.samples])
        samples = _topic_configs(admin, kafka.topics.samples)
        ratings = _topic_configs(admin, kafka.topics.ratings)
    finally:
        admin.close()
    assert created == []
    assert samples[TIMESTAMP_TYPE] == "LogAppendTime"
    assert samples["retention.ms"] == "123456789"
    assert ratings[TIMESTAMP_TYPE] == "CreateTime"  # producers' event times stay on the input
    assert ratings["retention.ms"] == "123456789"


def test_a_ratings_topic_walkstream_creates_keeps_the_brokers_time(
    local_stack: Settings, unique: str
) -> None:
    """The job judges an event's time against its record's timestamp: the broker's clock."""
    kafka = local_stack.kafka.model_copy(
        update={"topics": local_stack.kafka.topics.model_copy(update={"ratings": unique})}
    )
    assert ensure_topics(kafka, [unique]) == [unique]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        assert _topic_configs(admin, unique)[TIMESTAMP_TYPE] == "LogAppendTime"
    finally:
        admin.close()
