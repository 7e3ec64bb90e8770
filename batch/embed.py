"""Word2Vec training on sequences and/or walks, and neighbour-average vectors for cold items.

Every item in a kept transition gets a vector: trained when Word2Vec kept it, otherwise the
count-weighted average of its trained in- and out-neighbours (flagged cold). Items whose
neighbours are all cold get the average of those, round after round, so the whole connected
component of any trained item is covered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from gensim.models import Word2Vec
from gensim.models.callbacks import CallbackAny2Vec

from batch.graph import TransitionGraph
from streaming.config import TrainingSettings

__all__ = ["Embeddings", "fill_cold", "train_word2vec", "trained_vectors"]

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embeddings:
    """Vectors by item id; `cold[k]` marks a neighbour average rather than a trained vector."""

    item_ids: npt.NDArray[np.int64]
    vectors: Vectors
    cold: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def as_dict(self) -> dict[int, Vectors]:
        return dict(zip(self.item_ids.tolist(), self.vectors, strict=True))


class _EpochProgress(CallbackAny2Vec):  # type: ignore[misc]
    def __init__(self, report: Callable[[str], None], epochs: int) -> None:
        self.report, self.epochs, self.epoch = report, epochs, 0

    def on_epoch_end(self, model: Word2Vec) -> None:
        self.epoch += 1
        self.report(f"  word2vec: epoch {self.epoch}/{self.epochs}")


def train_word2vec(
    corpus: Sequence[Sequence[str]],
    settings: TrainingSettings,
    report: Callable[[str], None] | None = None,
) -> Word2Vec:
    """Train on a list of token lists (item ids as strings); a list, so it can be re-iterated."""
    logging.getLogger("gensim").setLevel(logging.WARNING)
    callbacks = [_EpochProgress(report, settings.epochs)] if report is not None else []
    model = Word2Vec(
        sentences=corpus,
        vector_size=settings.vector_size,
        window=settings.window,
        sg=int(settings.sg),
        hs=int(settings.hs),
        negative=settings.negative,
        ns_exponent=settings.ns_exponent,
        sample=settings.sample,
        min_count=settings.min_count,
        epochs=settings.epochs,
        alpha=settings.alpha,
        min_alpha=settings.min_alpha,
        workers=settings.workers or os.cpu_count() or 1,
        seed=settings.seed,
        callbacks=callbacks,
    )
    model.callbacks = ()  # they hold a reporting function, which must not be saved
    return model


def trained_vectors(model: Word2Vec) -> tuple[npt.NDArray[np.int64], Vectors]:
    keys = np.array([int(key) for key in model.wv.index_to_key], dtype=np.int64)
    vectors: Vectors = np.asarray(model.wv.vectors, dtype=np.float32)
    return keys, vectors


def fill_cold(
    graph: TransitionGraph, trained_ids: npt.NDArray[np.int64], trained: Vectors
) -> Embeddings:
    """Vectors for every item of `graph` (and every trained item), cold ones averaged in."""
    item_ids = np.union1d(graph.items, trained_ids)
    n, dim = len(item_ids), trained.shape[1]
    vectors = np.zeros((n, dim), dtype=np.float64)
    known = np.zeros(n, dtype=bool)
    at = np.searchsorted(item_ids, trained_ids)
    vectors[at] = trained
    known[at] = True

    # Undirected neighbour counts: an edge a->b with count c links a and b with weight c.
    nodes = np.searchsorted(item_ids, graph.items)
    src = nodes[graph.sources]
    dst = nodes[graph.indices]
    weights = graph.counts.astype(np.float64)
    adjacency = sp.csr_matrix(
        (
            np.concatenate([weights, weights]),
            (np.concatenate([src, dst]), np.concatenate([dst, src])),
        ),
        shape=(n, n),
    )
    cold = np.zeros(n, dtype=bool)
    while True:
        missing = np.flatnonzero(~known)
        if len(missing) == 0:
            break
        rows = adjacency[missing]
        mass = rows @ known.astype(np.float64)
        reachable = mass > 0
        if not reachable.any():
            break
        sums = rows[reachable] @ vectors  # rows of items without a vector are zero
        filled = missing[reachable]
        vectors[filled] = sums / mass[reachable, None]
        known[filled] = True
        cold[filled] = True
    return Embeddings(item_ids[known], vectors[known].astype(np.float32), cold[known])
