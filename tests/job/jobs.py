"""Helpers for tests that run the real streaming job as a process against the session's Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streaming.config import Settings, load_settings
from streaming.core.events import Event
from streaming.topics import ensure_topics

TOPICS = ("ratings", "dead_letter", "late", "samples", "items", "walk_hops", "counts")


@dataclass
class JobWorld:
    """One test's own topics, consumer group and checkpoint directory."""

    settings: Settings
    flags: list[str]
    log: Path

    def command(self, *job_args: str) -> list[str]:
        return [sys.executable, "-m", "streaming.cli", *self.flags, "job", *job_args]

    def run(self, *job_args: str, timeout_s: float = 240) -> None:
        """Run a bounded job to its end; fail with its log if it fails."""
        with self.log.open("ab") as log:
            result = subprocess.run(
                self.command(*job_args), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
            )
        assert result.returncode == 0, self.log.read_text()[-5000:]

    def start(self, *job_args: str) -> subprocess.Popen[bytes]:
        """Start the job in its own process group, so the JVM dies with it."""
        with self.log.open("ab") as log:
            return subprocess.Popen(
                self.command(*job_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def topic(self, name: str) -> str:
        return str(getattr(self.settings.kafka.topics, name))


def job_world(base: Settings, unique: str, tmp: Path, **overrides: object) -> JobWorld:
    tmp.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {
        "kafka.bootstrap_servers": base.kafka.bootstrap_servers,
        "kafka.partitions": 4,
        "runtime.jars_dir": base.runtime.jars_dir,
        "stream.group_id": unique,
        "stream.emit_counts": "true",
        "flink.parallelism": 2,
        "flink.checkpoint_dir": tmp / "checkpoints",
        "flink.checkpoint_interval_ms": 1000,
        **{f"kafka.topics.{name}": f"{unique}.{name}" for name in TOPICS},
        **overrides,
    }
    flags = [part for key, value in values.items() for part in ("--set", f"{key}={value}")]
    from streaming.config import parse_assignments

    settings = load_settings(overrides=parse_assignments(flags[1::2]))
    ensure_topics(settings.kafka, [str(getattr(settings.kafka.topics, n)) for n in TOPICS])
    return JobWorld(settings, flags, tmp / "job.log")


def send_raw(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
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


def read_topic(settings: Settings, topic: str) -> list[tuple[int, int, int, bytes | None, bytes]]:
    """Every committed record now in `topic`: (partition, offset, timestamp ms, key, value)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_poll_records=50_000,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records = []
    idle = 0  # transaction markers occupy offsets no record is returned for
    while idle < 5 and any(consumer.position(tp) < end[tp] for tp in partitions):
        polled = consumer.poll(timeout_ms=500)
        idle = 0 if polled else idle + 1
        for tp, batch in polled.items():
            records += [(tp.partition, m.offset, m.timestamp, m.key, m.value) for m in batch]
    consumer.close()
    return records


def final_counts(settings: Settings) -> dict[tuple[int, int], int]:
    """Transition counts from the job's count updates (counts only grow; repeats are equal)."""
    counts: dict[tuple[int, int], int] = {}
    for *_, value in read_topic(settings, settings.kafka.topics.counts):
        src, dst, count = map(int, value.split())
        counts[(src, dst)] = max(count, counts.get((src, dst), 0))
    return counts
