"""Cycle planning: when a cycle is due, what it trains on, and its training in a thread.

A cycle's inputs are fixed when it starts (`Plan`), so the trainer keeps consuming while
gensim trains.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from gensim.models import Word2Vec

from streaming.config import TrainerSettings, TrainingSettings, WalkSettings
from streaming.embeddings.graph import Sequences, TransitionGraph, transition_graph
from streaming.embeddings.pipeline import training_corpus
from streaming.embeddings.smoothing import smooth
from streaming.embeddings.vectors import Embeddings
from streaming.trainer.checkpoints import Checkpoint
from streaming.trainer.corpus import Corpus, UserTransition
from streaming.trainer.model import train_full, train_incremental

__all__ = ["Plan", "Training", "chain", "is_due", "plan_cycle", "train", "trainable"]

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
    corpus: list[list[str]]  # what the cycle trains on (an incremental one: and `replay`)
    new: int  # samples since the previous model
    replay: list[list[str]]
    held_out: list[list[str]]
    base: Word2Vec | None  # the checkpointed model an incremental cycle continues
    began: float
    users: int = 0  # user sequences in `corpus`
    smoothing: float = 0.0  # training.smoothing
    graph: TransitionGraph | None = None  # the window's transitions, when smoothing

    def published(self, embeddings: Embeddings) -> Embeddings:
        """The cycle's vectors (trained, cold items added) as they are published: smoothed
        over the window's transition graph with `training.smoothing`."""
        return smooth(embeddings, self.graph, self.smoothing)

    @property
    def kind(self) -> str:
        return "full" if self.full else "incremental"

    def checkpoint(self, version: int | None, training: TrainingSettings) -> Checkpoint:
        """What a model trained on this plan covers, published as `version`."""
        return Checkpoint(
            cycle=self.cycle,
            kind=self.kind,
            version=version,
            trained_through=self.end,
            offsets=self.offsets,
            newest_event_time=self.newest_event_time,
            seed=training.seed,
            training=training.model_dump(),
        )


def chain(transitions: Iterable[UserTransition]) -> Sequences:
    """Users' transitions (in any order; a repeated one counts once) chained back into their
    ordered sequences: by (event time, dst), the order the job released them in. A transition
    whose src is not the previous one's dst (the window cut what came between) starts a new
    row, so no row joins two items the user did not rate one after the other."""
    by_user: dict[int, set[tuple[int, int, int]]] = {}
    for t in transitions:
        by_user.setdefault(t.user, set()).add((t.event_time, t.dst, t.src))
    users: list[int] = []
    indptr: list[int] = [0]
    items: list[int] = []
    times: list[int] = []

    def close(row_items: list[int], row_times: list[int], user: int) -> None:
        if len(row_items) > 1:
            users.append(user)
            items.extend(row_items)
            times.extend(row_times)
            indptr.append(len(items))

    for user in sorted(by_user):
        row_items: list[int] = []
        row_times: list[int] = []
        for event_time, dst, src in sorted(by_user[user]):
            if not row_items or row_items[-1] != src:
                close(row_items, row_times, user)
                row_items, row_times = [src], [event_time]
            row_items.append(dst)
            row_times.append(event_time)
        close(row_items, row_times, user)
    return Sequences(
        np.array(users, dtype=np.int64),
        np.array(indptr, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(times, dtype=np.int64),
    )


def _recent_context(
    sequences: Sequences, new_per_user: dict[int, int], window: int
) -> list[list[str]]:
    """For each user with new transitions, the end of their last row: the new items and up
    to `window` items before them, so new items are learnt in their user's context."""
    last_row = {int(user): k for k, user in enumerate(sequences.users.tolist())}
    sentences = []
    for user, new in new_per_user.items():
        row = last_row.get(user)
        if row is not None:
            tail = sequences.items_of(row)[-(new + 1 + window) :]
            sentences.append([str(item) for item in tail.tolist()])
    return sentences


def _replayed_sequences(
    sequences: Sequences, items: int, rng: np.random.Generator, half_life_s: float | None
) -> list[list[str]]:
    """Rows of the window's user sequences in a seeded random order, at most `items` items
    in all (the last row a random slice of what is left, if 2 or more): what an incremental
    cycle replays, so it keeps learning what users rate one after the other, as a full
    retrain does, instead of drifting towards the job's walks alone. Counting items, not
    rows, bounds a cycle's cost by its new data however long users' sequences grow.

    With a half-life the order is a weighted one (Efraimidis and Spirakis' keys u^(1/w)),
    each row weighing as its newest transition does (2^((t - T) / h) as of the newest
    row's T): recent rows come first, so the replay teaches what users do now."""
    order = rng.permutation(len(sequences.users))
    if half_life_s is not None and len(order):
        newest = sequences.times[sequences.indptr[1:] - 1]
        weights = np.exp2((newest - newest.max()) / half_life_s)
        with np.errstate(divide="ignore"):  # a weight that underflowed: its row comes last
            keys = np.log(rng.random(len(order))) / weights
        order = np.argsort(-keys, kind="stable")
    replayed: list[list[str]] = []
    left = items
    for row in order.tolist():
        if left < 2:
            break
        row_items = sequences.items_of(row)
        if len(row_items) > left:
            first = int(rng.integers(len(row_items) - left + 1))
            row_items = row_items[first : first + left]
        replayed.append([str(item) for item in row_items.tolist()])
        left -= len(row_items)
    return replayed


def _cut(walks: list[list[str]], pairs: set[tuple[str, str]]) -> list[list[str]]:
    """`walks` split wherever they step over one of `pairs`; pieces of one item dropped."""
    if not pairs:
        return walks
    pieces = []
    for walk in walks:
        start = 0
        for k in range(1, len(walk)):
            if (walk[k - 1], walk[k]) in pairs:
                pieces.append(walk[start:k])
                start = k
        pieces.append(walk[start:])
    return [piece for piece in pieces if len(piece) > 1]


def plan_cycle(
    corpus: Corpus,
    previous: Checkpoint | None,
    base: Word2Vec | None,
    full: bool,
    options: TrainerSettings,
    training: TrainingSettings,
    walks: WalkSettings,
) -> Plan:
    """Snapshot what the cycle after `previous` trains on.

    A full cycle trains on what `walkstream batch` would build from the window's events: the
    users' whole sequences, chained from their transitions, and walks drawn over their
    transition graph (`training_corpus`), so that the model equals the batch model of the
    same events. A window without transitions (the job writes none) trains on its walks.
    An incremental cycle continues `base` on the new walks and the new items of each user in
    their context, and replays `replay_ratio` times as many items from the window's user
    sequences, a seeded sample (a window without transitions: `walk_replay_ratio` older
    walks per new walk from a seeded reservoir), so its cost follows its new data, not the
    window.

    The drift gate asks whether the candidate predicts what users did since the current
    version at least as well as the current version does: every `held_out_every`th
    transition that is new since `previous` is held out of this cycle's training (it is
    trained on by the cycles after), and the gate scores both on those next-item pairs. A
    held-out transition splits its user's sequence, and the job's walks are cut where they
    step over a pair that only held-out transitions make, so no sentence and no walk teaches
    it. A full retrain thus trains on everything but a share of the newest transitions: once
    the stream settles, on everything. In a window without transitions, every
    `held_out_every`th walk is held out instead."""
    cycle = previous.cycle + 1 if previous else 1
    start = previous.trained_through if previous else corpus.first_seq
    every = options.held_out_every
    held_walks: deque[list[str]] = deque(maxlen=_HELD_OUT_LIMIT)
    held_transitions: set[UserTransition] = set()
    older: list[list[str]] = []  # a reservoir of older walks
    new: list[tuple[int, list[str]]] = []
    transitions: list[UserTransition] = []
    new_per_user: dict[int, int] = {}
    rng = np.random.default_rng([training.seed, cycle])
    seen_older = 0
    replay = int(options.walk_replay_ratio * max(0, corpus.next_seq - start))
    for seq, sample in corpus.samples():
        if isinstance(sample, UserTransition):
            if previous is not None and seq >= start and seq % every == 0:
                held_transitions.add(sample)
                continue
            transitions.append(sample)
            if seq >= start:
                new_per_user[sample.user] = new_per_user.get(sample.user, 0) + 1
        elif seq >= start:
            new.append((seq, sample))
            if seq % every == 0:
                held_walks.append(sample)
        elif seq % every == 0:
            held_walks.append(sample)
        elif not (transitions or held_transitions):  # else the window's sequences are replayed
            seen_older += 1
            if len(older) < replay:
                older.append(sample)
            elif (slot := int(rng.integers(seen_older))) < replay:
                older[slot] = sample
    # A held-out transition is out of training even where an at-least-once write repeated it.
    sequences = chain(t for t in transitions if t not in held_transitions)
    with_transitions = bool(transitions or held_transitions)
    if with_transitions:
        newest = sorted(held_transitions, key=lambda t: (t.event_time, t))[-_HELD_OUT_LIMIT:]
        held_out = [[str(t.src), str(t.dst)] for t in newest]
        new_walks = [walk for _, walk in new]
    else:  # walks only: the gate scores on held-out walks, so they are not trained on
        held_out = list(held_walks)
        new_walks = [walk for seq, walk in new if seq % every != 0]
    # The job's walks step over every transition it counted, held-out ones too: cut them
    # where they cross a pair that only held-out transitions make.
    taught = {(t.src, t.dst) for t in transitions if t not in held_transitions}
    untaught = {(str(t.src), str(t.dst)) for t in held_transitions if (t.src, t.dst) not in taught}
    trained: list[list[str]]
    replayed: list[list[str]] = []
    new_transitions = sum(new_per_user.values())
    graph = (
        transition_graph(sequences, walks.half_life_s)
        if transitions and (full or training.smoothing)
        else None
    )
    if full and graph is not None:
        sentences, _ = training_corpus(sequences, graph, training, walks)
        trained = sentences
    elif full:
        trained = [
            sample
            for seq, sample in corpus.samples()
            if isinstance(sample, list) and seq % every != 0
        ]  # a window without transitions has nothing to cut
    else:
        trained = [
            *_cut(new_walks, untaught),
            *_recent_context(sequences, new_per_user, training.window),
        ]
        replayed = (
            _replayed_sequences(
                sequences,
                int(options.replay_ratio * sum(map(len, trained))),
                rng,
                walks.half_life_s,
            )
            if with_transitions
            else _cut(older, untaught)  # a window without transitions replays older walks
        )
    return Plan(
        cycle=cycle,
        full=full,
        start=start,
        end=corpus.next_seq,
        offsets=dict(corpus.offsets),
        newest_event_time=corpus.newest_event_time,
        corpus=trained,
        new=len(new_walks) + new_transitions,
        replay=replayed,
        held_out=held_out,
        base=None if full else base,
        began=time.monotonic(),
        users=len(sequences) if full else len(new_per_user),
        smoothing=training.smoothing,
        graph=graph if training.smoothing else None,
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
