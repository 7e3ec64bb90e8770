"""Graph smoothing: each published vector leans towards its transition-graph neighbours.

Word2Vec places an item by every sentence it was ever trained on, so an item whose
neighbours changed (it moved to another audience, or decay let its old transitions fade)
lags behind them, and an item seen in few sentences is placed by little. Smoothing blends
each item's direction with the weighted average of its in- and out-neighbours' directions,
the weights being the graph's counts (with `walks.half_life_s`, its decayed weights, so the
blend follows recent behaviour):

    x_i = unit((1 - share) * unit(v_i) + share * unit(sum_j w_ij unit(v_j)))

over the neighbours j that have a vector. An item with no such neighbour keeps its
direction. Every smoothed vector has unit length (readers rank by cosine). One step, exact
given the vectors and the graph: `walkstream batch` and the trainer publish the same
smoothing of the same input.
"""

from __future__ import annotations

import numpy as np

from streaming.embeddings.graph import TransitionGraph
from streaming.embeddings.vectors import Embeddings, unit_rows

__all__ = ["smooth"]


def smooth(embeddings: Embeddings, graph: TransitionGraph | None, share: float) -> Embeddings:
    """`embeddings` smoothed over `graph` with `share` (0: unchanged, as given; no graph:
    nothing to lean towards, unchanged)."""
    if not 0 <= share <= 1:
        raise ValueError(f"smoothing share {share} is not within [0, 1]")
    if share == 0 or graph is None or len(embeddings) == 0:
        return embeddings
    order = np.argsort(embeddings.item_ids, kind="stable")
    item_ids = embeddings.item_ids[order]
    own = unit_rows(embeddings.vectors[order].astype(np.float64))
    adjacency = graph.undirected(item_ids)
    neighbours = adjacency @ own
    has = np.asarray(adjacency.sum(axis=1)).ravel() > 0
    blended = np.where(has[:, None], (1 - share) * own + share * unit_rows(neighbours), own)
    smoothed = np.empty_like(blended)
    smoothed[order] = unit_rows(blended)
    return Embeddings(embeddings.item_ids, smoothed.astype(np.float32), embeddings.cold)
