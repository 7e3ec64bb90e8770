"""Kafka topics walkstream reads and writes: created on first use with the configured layout."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streaming.config import KafkaSettings

__all__ = ["ensure_topics"]


def ensure_topics(settings: KafkaSettings, names: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; return the names it created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        missing = sorted(set(names) - existing)
        created = []
        for name in missing:
            topic = NewTopic(name, settings.partitions, settings.replication_factor)
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # created by someone else in the meantime: that is what we wanted
        return created
    finally:
        admin.close()
