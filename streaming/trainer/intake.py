"""The trainer's intake: samples and items records from Kafka, made durable in the corpus.

The corpus manifest, not Kafka's committed offsets, is the trainer's position: the consumer
starts where the manifest says, and commits only to report progress.
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streaming.config import Settings
from streaming.kafka_clients import kafka_python_config
from streaming.records import MALFORMED, Sighting, read_sample, read_sighting
from streaming.topics import ensure_topics, topic_partitions
from streaming.trainer.corpus import Corpus, UserTransition
from streaming.trainer.metrics import TrainerMetrics

__all__ = ["Intake"]


class Intake:
    """One consumer of the samples and items topics, positioned at the corpus's offsets."""

    def __init__(self, settings: Settings, corpus: Corpus, metrics: TrainerMetrics) -> None:
        self.corpus = corpus
        self.metrics = metrics
        topics = settings.kafka.topics
        self._samples_topic = topics.samples
        ensure_topics(settings.kafka, [topics.samples, topics.items])
        self.consumer = KafkaConsumer(
            **kafka_python_config(settings.kafka),
            group_id=settings.trainer.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_poll_records=20_000,
        )
        partitions = topic_partitions(settings.kafka, [topics.samples, topics.items])
        self.consumer.assign(partitions)
        offsets = corpus.offsets
        for tp in partitions:
            position = offsets.get(f"{tp.topic}:{tp.partition}")
            if position is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, position)

    def poll(self, timeout_ms: int = 500) -> tuple[int, set[int]]:
        """Poll once and make what arrived durable: how many samples it added, and the items
        whose neighbour counts the items records it read changed (already in the corpus)."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        if not polled:
            return 0, set()
        samples: list[list[int] | UserTransition] = []
        newest_event_time = 0
        sightings: list[Sighting] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in polled.items():
            for record in records:
                try:
                    if tp.topic == self._samples_topic:
                        sample = read_sample(record.value)
                        if sample.user is None:
                            samples.append(sample.items)
                        else:
                            src, dst = sample.items
                            samples.append(
                                UserTransition(sample.user, sample.newest_event_time, src, dst)
                            )
                        newest_event_time = max(newest_event_time, sample.newest_event_time)
                    else:
                        sightings.append(read_sighting(record.value))
                except MALFORMED:
                    self.metrics.malformed.inc()
            offsets[tp] = records[-1].offset + 1
        durable = {f"{tp.topic}:{tp.partition}": offset for tp, offset in offsets.items()}
        self.corpus.append(samples, durable, sightings, newest_event_time)
        self.metrics.samples.inc(len(samples))
        # Only now, and only to report progress: on restart the corpus manifest decides.
        self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        return len(samples), {sighting.item for sighting in sightings}

    def lag(self) -> int:
        """Records behind the ends of the consumed partitions."""
        partitions = list(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)
        return int(sum(ends[tp] - self.consumer.position(tp) for tp in partitions))

    def close(self) -> None:
        self.consumer.close()
