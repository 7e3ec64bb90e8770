"""The batch pipeline's steps, each timed: sequences -> graph -> corpus (sequences and walks)
-> Word2Vec -> cold fill. The trainer's full retrain builds its corpus with the same function."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streaming.config import TrainingSettings, WalkSettings
from streaming.embeddings.cold import fill_cold
from streaming.embeddings.graph import (
    Sequences,
    TransitionGraph,
    transition_count,
    transition_graph,
)
from streaming.embeddings.vectors import Embeddings
from streaming.embeddings.walks import WalkSampler, as_sentences
from streaming.embeddings.word2vec import train_word2vec, trained_vectors
from streaming.report import Report

__all__ = ["EmbedResult", "embed_sequences", "fading_sequences", "training_corpus"]


@dataclass
class EmbedResult:
    embeddings: Embeddings
    graph: TransitionGraph
    model: object
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Share of the items in kept transitions that have a vector (trained or cold)."""
        if self.graph.n_nodes == 0:
            return 1.0
        return float(np.isin(self.graph.items, self.embeddings.item_ids).mean())


@contextmanager
def _timed(seconds: dict[str, float], step: str, report: Report) -> Iterator[None]:
    began = time.perf_counter()
    yield
    seconds[step] = round(time.perf_counter() - began, 3)
    report(f"  {step:<10} {seconds[step]:7.2f}s")


def training_corpus(
    sequences: Sequences,
    graph: TransitionGraph,
    training: TrainingSettings,
    walks: WalkSettings,
) -> tuple[list[list[str]], int]:
    """Word2Vec's sentences for `training.method`: every user sequence of two or more items
    (Item2vec; with `walks.half_life_s`, thinned by age: `fading_sequences`) and
    `walks.n_walks` walks over `graph`, seeded by `training.seed` (DeepWalk, Node2vec with
    `walks.p`/`walks.q`); and how many walks it drew."""
    corpus: list[list[str]] = []
    if training.method in ("item2vec", "both"):
        rows = fading_sequences(sequences, walks.half_life_s, training.seed)
        corpus += [[str(item) for item in row] for row in rows if len(row) > 1]
    if training.method in ("deepwalk", "both") and walks.n_walks > 0 and graph.n_edges > 0:
        sampled = WalkSampler(graph, walks.p, walks.q).sample(
            walks.n_walks, walks.length, seed=training.seed
        )
        corpus += as_sentences(sampled, graph.items)
        return corpus, len(sampled)
    return corpus, 0


def fading_sequences(sequences: Sequences, half_life_s: float | None, seed: int) -> list[list[int]]:
    """Each user's items in order. With a half-life, each item is kept with probability the
    weight, as of the newest rating, of the transition into it (the first of a row: out of
    it), 2^((t - newest) / half_life): a retrain learns an old taste as faintly as the decayed
    walks step over it, not as strongly as a new one. The draw for an item is a hash of
    (seed, user, item, time), not of its position, so the trainer's sequences (chained back
    from transitions, a window's cuts) thin as `walkstream batch`'s do. Without a half-life,
    every item."""
    rows = sequences.lengths > 1
    if half_life_s is None or not rows.any():
        return sequences.as_lists()
    times = sequences.times.copy()
    starts = sequences.indptr[:-1][rows]
    times[starts] = times[starts + 1]
    # As of the newest transition: a user's single rating is none, and the trainer never sees it.
    newest = times[np.repeat(rows, sequences.lengths)].max()
    users = np.repeat(sequences.users, sequences.lengths)
    chance = _uniform_hash(seed, users, sequences.items, times)
    kept = chance < np.exp2((times - newest) / half_life_s)
    ends = np.cumsum(np.r_[0, kept])[sequences.indptr]
    items = sequences.items[kept]
    return [items[a:b].tolist() for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _uniform_hash(seed: int, *columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """A number in [0, 1) per row of `columns`, a function of the seed and the row's values
    alone (splitmix64 over the values mixed in turn)."""
    mixed = np.full(len(columns[0]), np.uint64(seed) ^ np.uint64(0xFADE), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            mixed = _splitmix64(mixed ^ column.astype(np.uint64))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def embed_sequences(
    sequences: Sequences,
    training: TrainingSettings,
    walks: WalkSettings,
    fill_cold_items: bool = True,
    report: Report = print,
) -> EmbedResult:
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {"users": len(sequences), "kept_ratings": len(sequences.items)}
    with _timed(seconds, "graph", report):
        graph = transition_graph(sequences, walks.half_life_s)
    counts |= {
        "items": graph.n_nodes,
        "edges": graph.n_edges,
        "transitions": transition_count(sequences),
    }
    with _timed(seconds, "corpus", report):
        corpus, walk_count = training_corpus(sequences, graph, training, walks)
    if walk_count:
        counts["walks"] = walk_count
    counts["corpus_tokens"] = sum(len(sentence) for sentence in corpus)
    with _timed(seconds, "word2vec", report):
        model = train_word2vec(corpus, training, report)
        trained_ids, trained = trained_vectors(model)
    with _timed(seconds, "cold", report):
        if fill_cold_items:
            embeddings = fill_cold(graph, trained_ids, trained)
        else:
            order = np.argsort(trained_ids)
            embeddings = Embeddings(
                trained_ids[order], trained[order], np.zeros(len(order), dtype=bool)
            )
    counts |= {"vectors": len(embeddings), "cold": int(embeddings.cold.sum())}
    return EmbedResult(embeddings, graph, model, counts, seconds)
