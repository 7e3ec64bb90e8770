"""The trainer: samples and items from Kafka -> durable corpus -> model versions in Redis.

One thread does everything in order (consume, make durable, patch cold items, retrain,
gate, publish, checkpoint), so a crash at any point resumes from the corpus manifest and
the latest checkpoint. Only the slow vector-set build runs beside it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from gensim.models import Word2Vec
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from streaming.config import Settings, TrainerSettings, TrainingSettings
from streaming.core.neighbours import neighbour_average
from streaming.embeddings.vectors import Embeddings
from streaming.errors import RuntimeServiceError
from streaming.kafka_clients import kafka_python_config
from streaming.records import read_sample, read_sighting
from streaming.report import Report
from streaming.store import connect
from streaming.store.versions import (
    VersionKeys,
    add_to_version,
    build_vector_set,
    current_version,
    publish_version,
    restore_sequence,
    supports_vector_sets,
)
from streaming.topics import ensure_topics, topic_partitions
from streaming.trainer.checkpoints import Checkpoint, CheckpointStore
from streaming.trainer.corpus import Corpus
from streaming.trainer.model import align, gate, train_full, train_incremental, with_cold_items

__all__ = ["Trainer", "TrainerMetrics"]

_HELD_OUT_LIMIT = 5_000


def _trainable(start: int, end: int, options: TrainerSettings) -> int:
    """Samples numbered [start, end) that are not held out (every Nth is, from 0)."""
    every = options.held_out_every
    held_out = (end - 1) // every - (start - 1) // every if end > start else 0
    return max(0, end - start - held_out)


class TrainerMetrics:
    """Prometheus counters and gauges of one trainer (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter("walkstream_trainer_samples", "samples made durable", registry=r)
        self.malformed = Counter(
            "walkstream_trainer_malformed", "unreadable samples/items records skipped", registry=r
        )
        self.cycles = Counter("walkstream_trainer_cycles", "cycles", ["kind"], registry=r)
        self.rejected = Counter(
            "walkstream_trainer_rejected", "candidates the drift gate refused", registry=r
        )
        self.cold_published = Counter(
            "walkstream_trainer_cold_published", "cold vectors added between cycles", registry=r
        )
        self.version = Gauge("walkstream_trainer_version", "published version", registry=r)
        self.lag = Gauge("walkstream_trainer_lag", "records behind the topics' ends", registry=r)
        self.cycle_seconds = Gauge(
            "walkstream_trainer_cycle_seconds", "duration of the last cycle", registry=r
        )
        self.coverage = Gauge(
            "walkstream_trainer_coverage", "share of seen items with a vector", registry=r
        )
        self.cold_items = Gauge("walkstream_trainer_cold_items", "cold vectors", registry=r)
        self.orphans = Gauge(
            "walkstream_trainer_orphan_items", "seen items without any neighbour vector", registry=r
        )
        self.overlap = Gauge(
            "walkstream_trainer_drift_overlap", "top-10 overlap of the last candidate", registry=r
        )


@dataclass
class _Published:
    """The version consumers read, as the trainer last wrote it."""

    version: int
    embeddings: Embeddings
    vectors: dict[int, npt.NDArray[np.float32]]


@dataclass(frozen=True)
class _Plan:
    """One cycle's inputs, fixed when it starts."""

    cycle: int
    full: bool
    start: int  # first corpus sequence number not in the previous model
    end: int  # corpus sequence number the cycle trains up to (exclusive)
    offsets: dict[str, int]
    newest_event_time: int
    corpus: list[list[str]]  # the window (full) or the new samples (incremental)
    new: int
    replay: list[list[str]]
    held_out: list[list[str]]
    base: Word2Vec | None  # the checkpointed model an incremental cycle continues
    began: float


def _train(plan: _Plan, training: TrainingSettings) -> Word2Vec:
    if plan.base is None:
        return train_full(plan.corpus, training)
    return train_incremental(plan.base, plan.corpus, plan.replay)


class _Training:
    """A cycle's Word2Vec training in a thread (gensim releases the GIL while it trains), so
    the trainer keeps consuming and publishing cold items meanwhile."""

    def __init__(self, plan: _Plan, training: TrainingSettings) -> None:
        self.plan = plan
        self.done = threading.Event()
        self._model: Word2Vec | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(training,), name=f"cycle-{plan.cycle}", daemon=True
        )
        self._thread.start()

    def _run(self, training: TrainingSettings) -> None:
        try:
            self._model = _train(self.plan, training)
        except Exception as error:  # noqa: BLE001 - re-raised in the trainer's thread by result()
            self._error = error
        finally:
            self.done.set()

    def result(self) -> Word2Vec:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._model is not None
        return self._model


class Trainer:
    def __init__(self, settings: Settings, report: Report = print) -> None:
        self.settings = settings
        self.report = report
        options = settings.trainer
        self.corpus = Corpus(
            settings.trainer_dir / "corpus", options.window_samples, options.segment_samples
        )
        self.checkpoints = CheckpointStore(settings.trainer_dir / "checkpoints")
        self.redis = connect(settings.redis)
        self.prefix = settings.redis.key_prefix
        self.metrics = TrainerMetrics()
        self.checkpoint: Checkpoint | None = None
        self.published: _Published | None = None
        self.force_full = False
        latest = self.checkpoints.latest()
        if latest is not None:
            self.checkpoint, _, embeddings = latest
            if self.checkpoint.version is not None:
                self.published = _Published(
                    self.checkpoint.version, embeddings, embeddings.as_dict()
                )
        self._builders: list[threading.Thread] = []

    # -- consuming ---------------------------------------------------------------------

    def _consumer(self) -> KafkaConsumer:
        topics = self.settings.kafka.topics
        ensure_topics(self.settings.kafka, [topics.samples, topics.items])
        consumer = KafkaConsumer(
            **kafka_python_config(self.settings.kafka),
            group_id=self.settings.trainer.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_poll_records=20_000,
        )
        partitions = topic_partitions(self.settings.kafka, [topics.samples, topics.items])
        consumer.assign(partitions)
        offsets = self.corpus.offsets
        for tp in partitions:
            position = offsets.get(f"{tp.topic}:{tp.partition}")
            if position is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, position)
        return consumer

    def consume(self, consumer: KafkaConsumer, timeout_ms: int = 500) -> int:
        """Poll once; make what arrived durable; return how many samples it added."""
        polled = consumer.poll(timeout_ms=timeout_ms)
        if not polled:
            return 0
        samples_topic = self.settings.kafka.topics.samples
        samples: list[list[int]] = []
        newest_event_time = 0
        sightings: dict[int, dict[int, int]] = {}
        offsets: dict[TopicPartition, int] = {}
        for tp, records in polled.items():
            for record in records:
                try:
                    if tp.topic == samples_topic:
                        items, newest = read_sample(record.value)
                        samples.append(items)
                        newest_event_time = max(newest_event_time, newest)
                    else:
                        item, counts = read_sighting(record.value)
                        sightings.setdefault(item, {}).update(counts)
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.metrics.malformed.inc()
            offsets[tp] = records[-1].offset + 1
        durable = {f"{tp.topic}:{tp.partition}": offset for tp, offset in offsets.items()}
        self.corpus.append(samples, durable, sightings, newest_event_time)
        self.metrics.samples.inc(len(samples))
        # Only now, and only to report progress: on restart the corpus manifest decides.
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        if sightings:
            self._publish_cold(sightings)
        return len(samples)

    def _publish_cold(self, sightings: Mapping[int, Mapping[int, int]]) -> None:
        """Items the current version lacks get their neighbours' average now, not next cycle."""
        published = self.published
        if published is None:
            return
        ids, vectors = [], []
        for item in sightings:
            if item in published.vectors:
                continue
            average = neighbour_average(self.corpus.neighbours[item], published.vectors)
            if average is not None:
                ids.append(item)
                vectors.append(average)
        if ids:
            added = add_to_version(
                self.redis, self.prefix, published.version, ids, np.vstack(vectors)
            )
            published.vectors.update(zip(ids, vectors, strict=True))
            self.metrics.cold_published.inc(added)

    # -- cycles ------------------------------------------------------------------------

    def _due(self, new_samples: int, since: float) -> bool:
        """Enough new samples, or the interval passed with some; after a rejection, the
        interval always passes first, so a failing gate does not retrain back to back. The
        first model always waits for enough samples: one trained on a handful is noise."""
        options = self.settings.trainer
        if new_samples <= 0 or (self.checkpoint is None and new_samples < options.min_new_samples):
            return False
        if self.force_full:
            return time.monotonic() - since >= options.interval_s
        return new_samples >= options.min_new_samples or time.monotonic() - since >= (
            options.interval_s
        )

    def cycle(self) -> Checkpoint | None:
        """Retrain (incrementally, or from scratch every `full_every` cycles or after a
        rejection), gate, publish, checkpoint. Returns the new checkpoint, None if gated."""
        plan = self._plan()
        return self._finish(plan, _train(plan, self.settings.training))

    def _plan(self) -> _Plan:
        """Snapshot what the cycle trains on; the training itself may run in another thread."""
        options, training = self.settings.trainer, self.settings.training
        previous = self.checkpoint
        cycle = previous.cycle + 1 if previous else 1
        start = previous.trained_through if previous else self.corpus.first_seq
        latest = self.checkpoints.latest()
        full = (
            latest is None or previous is None or self.force_full or cycle % options.full_every == 0
        )
        # One pass over the window; an incremental cycle keeps only the new samples and a
        # seeded reservoir of older ones, so its memory does not grow with the window.
        held_out: deque[list[str]] = deque(maxlen=_HELD_OUT_LIMIT)
        older: list[list[str]] = []  # the whole trainable window (full) or the reservoir
        new: list[list[str]] = []
        rng = np.random.default_rng([training.seed, cycle])
        seen_older = 0
        replay = int(options.replay_ratio * max(0, self.corpus.next_seq - start))
        for seq, sample in self.corpus.samples():
            if seq % options.held_out_every == 0:
                held_out.append(sample)
            elif seq >= start:
                new.append(sample)
            elif full:
                older.append(sample)
            else:
                seen_older += 1
                if len(older) < replay:
                    older.append(sample)
                elif (slot := int(rng.integers(seen_older))) < replay:
                    older[slot] = sample
        self.report(
            f"trainer: cycle {cycle} ({'full' if full else 'incremental'}) training on "
            f"{len(older) + len(new):,} samples"
        )
        return _Plan(
            cycle=cycle,
            full=full,
            start=start,
            end=self.corpus.next_seq,
            offsets=dict(self.corpus.offsets),
            newest_event_time=self.corpus.newest_event_time,
            corpus=[*older, *new] if full else new,
            new=len(new),
            replay=[] if full else older,
            held_out=list(held_out),
            base=None if full or latest is None else latest[1],
            began=time.monotonic(),
        )

    def _finish(self, plan: _Plan, model: Word2Vec) -> Checkpoint | None:
        options, training = self.settings.trainer, self.settings.training
        kind = "full" if plan.full else "incremental"
        embeddings, orphans = with_cold_items(model, self.corpus.neighbours)
        current = self.published.embeddings if self.published else None
        if plan.full and current is not None:
            embeddings = align(embeddings, current)
        trained_ids = embeddings.item_ids[~embeddings.cold]
        counts = [model.wv.get_vecattr(str(i), "count") for i in trained_ids]
        stable = trained_ids[np.argsort(counts)[::-1][:500]].tolist()
        verdict = gate(
            embeddings,
            current,
            stable,
            plan.held_out,
            options.min_overlap,
            options.min_quality_ratio,
        )
        self.metrics.overlap.set(verdict.overlap)
        self.metrics.cycles.labels(kind).inc()
        if not verdict.passed:
            self.metrics.rejected.inc()
            self.force_full = True
            self.report(
                f"trainer: cycle {plan.cycle} ({kind}) rejected by the drift gate: "
                f"{verdict.reason}; version "
                f"{self.published.version if self.published else '-'} keeps serving"
            )
            return None
        self.force_full = False
        version = self._publish(embeddings, kind, plan)
        checkpoint = Checkpoint(
            cycle=plan.cycle,
            kind=kind,
            version=version,
            trained_through=plan.end,
            offsets=plan.offsets,
            newest_event_time=plan.newest_event_time,
            seed=training.seed,
            training=training.model_dump(),
        )
        self.checkpoints.save(checkpoint, model, embeddings)
        self.checkpoint = checkpoint
        seconds = time.monotonic() - plan.began
        seen = len(embeddings) + len(orphans)
        self.metrics.cycle_seconds.set(seconds)
        self.metrics.coverage.set(len(embeddings) / seen if seen else 1.0)
        self.metrics.cold_items.set(int(embeddings.cold.sum()))
        self.metrics.orphans.set(len(orphans))
        self.report(
            f"trainer: cycle {plan.cycle} ({kind}) {plan.new:,} new samples, "
            f"{len(plan.corpus) + len(plan.replay):,} trained on, {seconds:.1f}s -> version "
            f"{version}: {len(embeddings):,} items ({int(embeddings.cold.sum()):,} cold, "
            f"{len(orphans):,} without neighbours), overlap {verdict.overlap:.2f}, "
            f"held-out HR@10 {verdict.hit_rate:.3f} (current {verdict.current_hit_rate:.3f})"
        )
        return checkpoint

    def _publish(self, embeddings: Embeddings, kind: str, plan: _Plan | None) -> int:
        info: dict[str, Any] = {
            "source": "trainer",
            "kind": kind,
            "seed": self.settings.training.seed,
            "training": self.settings.training.model_dump(),
        }
        checkpoint = self.checkpoint
        if plan is not None:
            info["offsets"] = plan.offsets
            info["newest_event_time"] = plan.newest_event_time
            info["samples"] = {"from": plan.start, "to": plan.end, "new": plan.new}
        elif checkpoint is not None:  # a republish: what the last checkpoint covered
            info["offsets"] = checkpoint.offsets
            info["newest_event_time"] = checkpoint.newest_event_time
        if self.published is not None:
            restore_sequence(self.redis, self.prefix, self.published.version)
        version = publish_version(
            self.redis,
            self.prefix,
            embeddings.item_ids,
            embeddings.vectors,
            embeddings.item_ids[embeddings.cold],
            info,
            grace_s=self.settings.trainer.grace_s,
            preload_s=self.settings.trainer.preload_s,
        )
        self.published = _Published(version, embeddings, embeddings.as_dict())
        self.metrics.version.set(version)
        if supports_vector_sets(self.redis):
            builder = threading.Thread(
                target=build_vector_set,
                args=(connect(self.settings.redis), self.prefix, version),
                name=f"vector-set-{version}",
                daemon=True,
            )
            builder.start()
            self._builders = [b for b in self._builders if b.is_alive()] + [builder]
        return version

    def ensure_published(self) -> None:
        """If Redis lost the current version (restarted empty), publish the last good one."""
        published = self.published
        if published is None:
            return
        version = current_version(self.redis, self.prefix)
        if version is not None and self.redis.exists(VersionKeys(self.prefix).meta(version)):
            return
        self.report(
            f"trainer: Redis has no current version (had {published.version}): republishing"
        )
        self._publish(published.embeddings, "republish", None)

    def _lag(self, consumer: KafkaConsumer) -> int:
        partitions = list(consumer.assignment())
        ends = consumer.end_offsets(partitions)
        return int(sum(ends[tp] - consumer.position(tp) for tp in partitions))

    def run(self, stop: threading.Event | None = None, cycles: int | None = None) -> None:
        """Consume and retrain until `stop` is set (or `cycles` cycles have published)."""
        stop = stop or threading.Event()
        port = self.settings.trainer.metrics_port
        if port:
            try:
                start_http_server(port, addr="127.0.0.1", registry=self.metrics.registry)
            except OSError as error:
                raise RuntimeServiceError(
                    f"cannot serve metrics on 127.0.0.1:{port} ({error.strerror}): set "
                    "trainer.metrics_port to a free port, or 0 to turn metrics off"
                ) from error
        consumer = self._consumer()
        self.report(
            f"trainer: {self.settings.kafka.topics.samples} + {self.settings.kafka.topics.items}"
            f" -> {self.settings.redis.url} prefix {self.prefix}; corpus "
            f"{self.corpus.next_seq - self.corpus.first_seq:,} samples; "
            + (f"resuming after cycle {self.checkpoint.cycle}" if self.checkpoint else "no model")
            + (f"; metrics on 127.0.0.1:{port}" if port else "")
        )
        published = 0
        since = checked = time.monotonic()
        training: _Training | None = None
        try:
            while not stop.is_set() and (cycles is None or published < cycles):
                self.consume(consumer)
                if time.monotonic() - checked >= 1.0:
                    self.ensure_published()
                    checked = time.monotonic()
                if training is not None and training.done.is_set():
                    if self._finish(training.plan, training.result()) is not None:
                        published += 1
                    training, since = None, time.monotonic()
                trained = self.checkpoint.trained_through if self.checkpoint else 0
                new = self.corpus.next_seq - trained
                trainable = _trainable(trained, self.corpus.next_seq, self.settings.trainer)
                if training is None and trainable > 0 and self._due(new, since):
                    self.metrics.lag.set(self._lag(consumer))
                    training = _Training(self._plan(), self.settings.training)
        finally:
            consumer.close()
            if training is not None:
                training.done.wait()  # gensim cannot be interrupted; its result is dropped
            for builder in self._builders:
                builder.join()
