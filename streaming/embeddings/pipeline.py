"""The batch pipeline's steps, each timed: sequences -> graph -> corpus (sequences and walks)
-> Word2Vec -> cold fill. The trainer's full retrain builds its corpus with the same function."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from streaming.config import TrainingSettings, WalkSettings
from streaming.embeddings.cold import fill_cold
from streaming.embeddings.graph import (
    Sequences,
    TransitionGraph,
    transition_count,
    transition_graph,
)
from streaming.embeddings.smoothing import smooth
from streaming.embeddings.vectors import Embeddings
from streaming.embeddings.walks import WalkSampler, as_sentences
from streaming.embeddings.word2vec import train_word2vec, trained_vectors
from streaming.report import Report

__all__ = ["EmbedResult", "embed_sequences", "training_corpus"]


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
    (Item2vec) and `walks.n_walks` walks over `graph`, seeded by `training.seed` (DeepWalk,
    Node2vec with `walks.p`/`walks.q`); and how many walks it drew."""
    corpus: list[list[str]] = []
    if training.method in ("item2vec", "both"):
        corpus += [[str(item) for item in row] for row in sequences.as_lists() if len(row) > 1]
    if training.method in ("deepwalk", "both") and walks.n_walks > 0 and graph.n_edges > 0:
        sampled = WalkSampler(graph, walks.p, walks.q).sample(
            walks.n_walks, walks.length, seed=training.seed
        )
        corpus += as_sentences(sampled, graph.items)
        return corpus, len(sampled)
    return corpus, 0


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
    if training.smoothing:
        with _timed(seconds, "smoothing", report):
            embeddings = smooth(embeddings, graph, training.smoothing)
    counts |= {"vectors": len(embeddings), "cold": int(embeddings.cold.sum())}
    return EmbedResult(embeddings, graph, model, counts, seconds)
