"""Cycle planning: when a cycle is due, what it trains on, and its training in a thread.

A cycle's inputs are fixed when it starts (`Plan`), so the trainer keeps consuming while
gensim trains.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from gensim.models import Word2Vec

from streaming.config import TrainerSettings, TrainingSettings
from streaming.trainer.checkpoints import Checkpoint
from streaming.trainer.corpus import Corpus
from streaming.trainer.model import train_full, train_incremental

__all__ = ["Plan", "Training", "is_due", "plan_cycle", "train", "trainable"]

_HELD_OUT_LIMIT = 5_000


def trainable(start: int, end: int, options: TrainerSettings) -> int:
    """Samples numbered [start, end) that are not held out (every Nth is, from 0)."""
    every = options.held_out_every
    held_out = (end - 1) // every - (start - 1) // every if end > start else 0
    return max(0, end - start - held_out)


def is_due(
    options: TrainerSettings,
    new_samples: int,
    idle_s: float,
    first: bool,
    after_rejection: bool,
) -> bool:
    """Enough new samples, or the interval passed (`idle_s` since the last cycle) with some;
    after a rejection, the interval always passes first, so a failing gate does not retrain
    back to back. The first model always waits for enough samples: one trained on a handful
    is noise."""
    if new_samples <= 0 or (first and new_samples < options.min_new_samples):
        return False
    if after_rejection:
        return idle_s >= options.interval_s
    return new_samples >= options.min_new_samples or idle_s >= options.interval_s


@dataclass(frozen=True)
class Plan:
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

    @property
    def kind(self) -> str:
        return "full" if self.full else "incremental"


def plan_cycle(
    corpus: Corpus,
    previous: Checkpoint | None,
    base: Word2Vec | None,
    full: bool,
    options: TrainerSettings,
    training: TrainingSettings,
) -> Plan:
    """Snapshot what the cycle after `previous` trains on: the whole window (`full`), or the
    samples since `previous` continuing `base`. One pass over the window; an incremental
    cycle keeps only the new samples and a seeded reservoir of older ones, so its memory does
    not grow with the window."""
    cycle = previous.cycle + 1 if previous else 1
    start = previous.trained_through if previous else corpus.first_seq
    held_out: deque[list[str]] = deque(maxlen=_HELD_OUT_LIMIT)
    older: list[list[str]] = []  # the whole trainable window (full) or the reservoir
    new: list[list[str]] = []
    rng = np.random.default_rng([training.seed, cycle])
    seen_older = 0
    replay = int(options.replay_ratio * max(0, corpus.next_seq - start))
    for seq, sample in corpus.samples():
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
    return Plan(
        cycle=cycle,
        full=full,
        start=start,
        end=corpus.next_seq,
        offsets=dict(corpus.offsets),
        newest_event_time=corpus.newest_event_time,
        corpus=[*older, *new] if full else new,
        new=len(new),
        replay=[] if full else older,
        held_out=list(held_out),
        base=None if full else base,
        began=time.monotonic(),
    )


def train(plan: Plan, training: TrainingSettings) -> Word2Vec:
    if plan.base is None:
        return train_full(plan.corpus, training)
    return train_incremental(plan.base, plan.corpus, plan.replay)


class Training:
    """A cycle's Word2Vec training in a thread (gensim releases the GIL while it trains), so
    the trainer keeps consuming and publishing cold items meanwhile."""

    def __init__(self, plan: Plan, training: TrainingSettings) -> None:
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
            self._model = train(self.plan, training)
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
