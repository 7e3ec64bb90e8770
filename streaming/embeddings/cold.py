"""Neighbour-average vectors for the items of a transition graph that Word2Vec did not keep.

Every item in a kept transition gets a vector: trained when Word2Vec kept it, otherwise the
count-weighted average of its trained in- and out-neighbours (flagged cold). Items whose
neighbours are all cold get the average of those, round after round, so the whole connected
component of any trained item is covered. The per-item form the trainer uses is
`streaming.core.neighbours.neighbour_average`; tests hold the two to the same vectors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streaming.embeddings.graph import TransitionGraph
from streaming.embeddings.vectors import Embeddings, Vectors

__all__ = ["fill_cold"]


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

    adjacency = graph.undirected(item_ids)  # every graph item is among item_ids
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
