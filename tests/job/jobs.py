"""Helpers for tests that run the real streaming job as a process against the session's Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from kafka.partitioner.default import murmur2

from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, load_settings, parse_assignments
from streaming.embeddings.graph import transition_graph, user_sequences
from streaming.rating_files import load_events
from streaming.records import ITEM_STAGE, read_count_update
from streaming.topics import ensure_topics
from tests.kafka_records import read_topic

TOPICS = ("ratings", "dead_letter", "late", "samples", "items", "walk_hops", "counts", "users")


@dataclass
class JobWorld:
    """One test's own topics, consumer group and checkpoint directory."""

    settings: Settings
    flags: list[str]
    log: Path

    def arguments(self, *job_args: str) -> list[str]:
        """`walkstream` arguments for the job: this world's settings, then the subcommand."""
        return [*self.flags, "job", *job_args]

    def command(self, *job_args: str) -> list[str]:
        return [sys.executable, "-m", "streaming.cli", *self.arguments(*job_args)]

    def environment(self) -> dict[str, str]:
        """Flink's own log next to this test's job log."""
        return {**os.environ, "FLINK_LOG_DIR": str(self.log.parent / "flink-log")}

    def run(self, *job_args: str, timeout_s: float = 240) -> None:
        """Run a bounded job to its end; fail with its log if it fails."""
        with self.log.open("ab") as log:
            result = subprocess.run(
                self.command(*job_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                env=self.environment(),
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
                env=self.environment(),
            )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def topic(self, name: str) -> str:
        return str(getattr(self.settings.kafka.topics, name))

    def with_settings(self, *assignments: str) -> JobWorld:
        """This world with KEY=VALUE `assignments` on top of its settings (as after an
        upgrade), its topics and checkpoints the same."""
        flags = [*self.flags, *(part for a in assignments for part in ("--set", a))]
        return replace(self, settings=_settings(flags), flags=flags)


def _settings(flags: list[str]) -> Settings:
    """The settings of `walkstream` flags that are all `--set KEY=VALUE`."""
    return load_settings(overrides=parse_assignments(flags[1::2]))


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
    settings = _settings(flags)
    ensure_topics(settings.kafka, [str(getattr(settings.kafka.topics, n)) for n in TOPICS])
    return JobWorld(settings, flags, tmp / "job.log")


def final_counts(
    settings: Settings, as_of: int | None = None, holder: str = ITEM_STAGE
) -> dict[tuple[int, int], int] | dict[tuple[int, int], float]:
    """Transition counts from the count updates of `holder` (the item stage, or a walk task's
    step tables): the largest of each edge (weights only grow; repeats are equal). With
    `walks.half_life_s`, weights as of event time `as_of`."""
    half_life = settings.walks.half_life_s
    counts: dict[tuple[int, int], float] = {}
    for *_, value in read_topic(settings, settings.kafka.topics.counts):
        src, dst, weight, stored_as_of, held_by = read_count_update(value)
        if held_by != holder:
            continue
        if stored_as_of is not None:
            assert half_life is not None
            assert as_of is not None
            weight *= 2 ** ((stored_as_of - as_of) / half_life)
        counts[(src, dst)] = max(weight, counts.get((src, dst), 0.0))
    return counts


# For tests that release each phase with an event in every ratings partition: no partition
# is ever taken for idle. One that was (quiet while the test waits) would stop holding the
# watermark back, so another partition's release could pass it over this one's events of the
# same phase before they are read, and make them late.
NO_IDLE_PARTITIONS = {"stream.idle_timeout_s": 3600, "stream.behind_idle_timeout_s": 3600}


def a_user_per_partition(partitions: int, users: range) -> dict[int, int]:
    """partition -> one of `users` whose events the producer (murmur2 of the key) sends there."""
    chosen = {(murmur2(str(u).encode()) & 0x7FFFFFFF) % partitions: u for u in users}
    assert len(chosen) == partitions
    return chosen


def synthetic(tmp: Path, events: int, seed: int) -> Path:
    spec = SyntheticSpec(users=events // 40, items=400, communities=8, events=events, seed=seed)
    return generate(tmp / "synth", spec).ratings_path


def batch_counts(ratings: Path, settings: Settings) -> dict[tuple[int, int], int]:
    """The oracle: the batch pipeline's transition counts of a ratings file."""
    columns, _ = load_events(ratings, "csv", settings.events)
    sequences = user_sequences(*columns, settings.events.high_rating)
    return transition_graph(sequences).to_dict()
