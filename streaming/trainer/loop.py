"""The trainer: samples and items from Kafka -> durable corpus -> model versions in Redis.

One thread does everything in order (consume, make durable, patch cold items, retrain,
gate, publish, checkpoint), so a crash at any point resumes from the corpus manifest and
the latest checkpoint. Only Word2Vec training and the vector-set builds run beside it.
The parts: `intake` (Kafka -> corpus), `cycles` (when and on what to train), `model`
(training and the drift gate), `publisher` (Redis), `checkpoints`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from gensim.models import Word2Vec
from prometheus_client import start_http_server

from streaming.config import Settings
from streaming.embeddings.vectors import Embeddings
from streaming.errors import ConfigError, RuntimeServiceError
from streaming.report import Report
from streaming.trainer.checkpoints import Checkpoint, CheckpointStore
from streaming.trainer.corpus import Corpus
from streaming.trainer.cycles import Plan, Training, is_due, plan_cycle, train, trainable
from streaming.trainer.intake import Intake
from streaming.trainer.metrics import TrainerMetrics
from streaming.trainer.model import GateResult, align, gate, with_cold_items
from streaming.trainer.publisher import Published, Publisher
from streaming.trainer.users import UserVectors

__all__ = ["Trainer"]


class Trainer:
    def __init__(self, settings: Settings, report: Report = print) -> None:
        if settings.training.smoothing and not settings.stream.transition_samples:
            raise ConfigError(
                f"training.smoothing={settings.training.smoothing} smooths over the users' "
                "transitions, which a job with stream.transition_samples=false does not "
                "write: set training.smoothing=0, or stream.transition_samples=true"
            )
        self.settings = settings
        self.report = report
        options = settings.trainer
        self.corpus = Corpus(
            settings.trainer_dir / "corpus", options.window_samples, options.segment_samples
        )
        self.checkpoints = CheckpointStore(settings.trainer_dir / "checkpoints")
        self.metrics = TrainerMetrics()
        self.checkpoint: Checkpoint | None = None
        self.force_full = False
        published = None
        latest = self.checkpoints.latest()
        if latest is not None:
            self.checkpoint, _, embeddings = latest
            if self.checkpoint.version is not None:
                published = Published(self.checkpoint.version, embeddings, embeddings.as_dict())
        self.users = UserVectors(settings, self.metrics) if settings.users.enabled else None
        self.publisher = Publisher(settings, self.metrics, report, published, self.users)

    # -- cycles ------------------------------------------------------------------------

    def cycle(self) -> Checkpoint | None:
        """Retrain (incrementally, or from scratch every `full_every` cycles or after a
        rejection), gate, publish, checkpoint. Returns the new checkpoint, None if gated."""
        plan = self._plan()
        return self._finish(plan, train(plan, self.settings.training))

    def _plan(self, settling: bool = False) -> Plan:
        options = self.settings.trainer
        previous = self.checkpoint
        latest = self.checkpoints.latest()
        cycle = previous.cycle + 1 if previous else 1
        full = (
            settling
            or latest is None
            or previous is None
            or self.force_full
            or cycle % options.full_every == 0
        )
        plan = plan_cycle(
            self.corpus,
            previous,
            None if latest is None else latest[1],
            full,
            options,
            self.settings.training,
            self.settings.walks,
        )
        self.report(
            f"trainer: cycle {plan.cycle} ({plan.kind}) training on "
            f"{len(plan.corpus) + len(plan.replay):,} samples"
        )
        return plan

    def _finish(self, plan: Plan, model: Word2Vec) -> Checkpoint | None:
        options, training = self.settings.trainer, self.settings.training
        embeddings, orphans = with_cold_items(model, self.corpus.neighbours)
        embeddings = plan.published(embeddings)
        published = self.publisher.published
        current = published.embeddings if published else None
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
            options.min_held_out,
        )
        self.metrics.overlap.set(verdict.overlap)
        self.metrics.cycles.labels(plan.kind).inc()
        if not verdict.passed:
            self.metrics.rejected.inc()
            self.force_full = True
            self.rejected_at = plan.end
            self.report(
                f"trainer: cycle {plan.cycle} ({plan.kind}) rejected by the drift gate: "
                f"{verdict.reason}; version {published.version if published else '-'} keeps "
                "serving"
            )
            return None
        self.force_full = False
        version = self.publisher.publish(embeddings, self._info(plan.kind, plan))
        checkpoint = plan.checkpoint(version, training)
        self.checkpoints.save(checkpoint, model, embeddings)
        self.checkpoint = checkpoint
        self._report_cycle(plan, embeddings, orphans, version, verdict)
        return checkpoint

    def _report_cycle(
        self,
        plan: Plan,
        embeddings: Embeddings,
        orphans: list[int],
        version: int,
        verdict: GateResult,
    ) -> None:
        seconds = time.monotonic() - plan.began
        seen = len(embeddings) + len(orphans)
        cold = int(embeddings.cold.sum())
        self.metrics.cycle_seconds.set(seconds)
        self.metrics.coverage.set(len(embeddings) / seen if seen else 1.0)
        self.metrics.cold_items.set(cold)
        self.metrics.orphans.set(len(orphans))
        self.report(
            f"trainer: cycle {plan.cycle} ({plan.kind}) {plan.new:,} new samples, "
            f"{len(plan.corpus) + len(plan.replay):,} trained on, {seconds:.1f}s -> version "
            f"{version}: {len(embeddings):,} items ({cold:,} cold, "
            f"{len(orphans):,} without neighbours), overlap {verdict.overlap:.2f}, "
            f"held-out HR@10 {verdict.hit_rate:.3f} (current {verdict.current_hit_rate:.3f}); "
            f"gate: {verdict.reason}"
        )

    def _info(self, kind: str, plan: Plan | None) -> dict[str, Any]:
        """A version's meta: how it was made, and what it covers."""
        info: dict[str, Any] = {
            "source": "trainer",
            "kind": kind,
            "seed": self.settings.training.seed,
            "training": self.settings.training.model_dump(),
            "walks": self.settings.walks.model_dump(),
        }
        checkpoint = self.checkpoint
        if plan is not None:
            info["offsets"] = plan.offsets
            info["newest_event_time"] = plan.newest_event_time
            info["samples"] = {"from": plan.start, "to": plan.end, "new": plan.new}
        elif checkpoint is not None:  # a republish: what the last checkpoint covered
            info["offsets"] = checkpoint.offsets
            info["newest_event_time"] = checkpoint.newest_event_time
        return info

    # -- the loop ----------------------------------------------------------------------

    def _serve_metrics(self) -> None:
        port = self.settings.trainer.metrics_port
        if not port:
            return
        try:
            start_http_server(port, addr="127.0.0.1", registry=self.metrics.registry)
        except OSError as error:
            raise RuntimeServiceError(
                f"cannot serve metrics on 127.0.0.1:{port} ({error.strerror}): set "
                "trainer.metrics_port to a free port, or 0 to turn metrics off"
            ) from error

    def run(self, stop: threading.Event | None = None, cycles: int | None = None) -> None:
        """Consume and retrain until `stop` is set (or `cycles` cycles have published)."""
        stop = stop or threading.Event()
        self._serve_metrics()
        intake = Intake(self.settings, self.corpus, self.metrics)
        port = self.settings.trainer.metrics_port
        topics = self.settings.kafka.topics
        self.report(
            f"trainer: {topics.samples} + {topics.items} -> {self.settings.redis.url} prefix "
            f"{self.publisher.prefix}; corpus "
            f"{self.corpus.next_seq - self.corpus.first_seq:,} samples; "
            + (f"resuming after cycle {self.checkpoint.cycle}" if self.checkpoint else "no model")
            + (f"; metrics on 127.0.0.1:{port}" if port else "")
        )
        published = 0
        since = checked = arrived = time.monotonic()
        settled_at = -1  # the corpus end a settling retrain last started at
        training: Training | None = None
        if self.users is not None:
            served = self.publisher.published
            self.users.start(
                None if served is None else (served.version, served.embeddings, served.vectors)
            )
        try:
            while not stop.is_set() and (cycles is None or published < cycles):
                if self.users is not None:
                    self.users.raise_if_failed()
                added, announced = intake.poll()
                if added:
                    arrived = time.monotonic()
                if announced:
                    self.publisher.publish_cold(announced, self.corpus.neighbours)
                if time.monotonic() - checked >= 1.0:
                    self.publisher.ensure_published(self._info("republish", None))
                    checked = time.monotonic()
                if training is not None and training.done.is_set():
                    if self._finish(training.plan, training.result()) is not None:
                        published += 1
                    training, since = None, time.monotonic()
                trained = self.checkpoint.trained_through if self.checkpoint else 0
                if training is None and self._due(trained, time.monotonic() - since):
                    self.metrics.lag.set(intake.lag())
                    training = Training(self._plan(), self.settings.training)
                elif (
                    training is None
                    and self._unsettled(time.monotonic() - arrived)
                    and settled_at != self.corpus.next_seq
                ):
                    settled_at = self.corpus.next_seq
                    self.report("trainer: no new samples: a full retrain of the window")
                    training = Training(self._plan(settling=True), self.settings.training)
        finally:
            intake.close()
            if training is not None:
                training.done.wait()  # gensim cannot be interrupted; its result is dropped
            self.publisher.close()
            if self.users is not None:
                self.users.close()

    def _unsettled(self, quiet_s: float) -> bool:
        """Quiet for `trainer.settle_s`, and the served version is not a full retrain of the
        whole corpus (or there is none yet, however few the samples): the best model of what
        the trainer has is one more cycle away."""
        settle_s = self.settings.trainer.settle_s
        if not settle_s or quiet_s < settle_s:
            return False
        checkpoint = self.checkpoint
        if checkpoint is None:
            return trainable(self.corpus.first_seq, self.corpus.next_seq, self.settings.trainer) > 0
        return checkpoint.kind != "full" or checkpoint.trained_through < self.corpus.next_seq

    def _due(self, trained_through: int, idle_s: float) -> bool:
        options = self.settings.trainer
        if trainable(trained_through, self.corpus.next_seq, options) == 0:
            return False
        if self.force_full and self.rejected_at == self.corpus.next_seq:
            return False  # the same samples would give the same verdict: wait for new ones
        return is_due(
            options,
            self.corpus.next_seq - trained_through,
            idle_s,
            first=self.checkpoint is None,
            after_rejection=self.force_full,
        )
