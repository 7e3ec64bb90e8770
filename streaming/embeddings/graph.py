"""User sequences and the item transition graph of a whole ratings file, vectorised.

The same rules as the streaming job's per-user `streaming.core.sequences.UserSequence`
(kept ratings, event-time order with ties by item id, exact duplicates once, no self-loops),
applied with NumPy sorts instead of per-event calls; tests hold the two to the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "Sequences",
    "TransitionGraph",
    "decayed_graph",
    "transition_count",
    "transition_graph",
    "user_sequences",
]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sequences:
    """Kept ratings per user in order: user `users[k]` rated `items[indptr[k]:indptr[k+1]]`."""

    users: Ints
    indptr: Ints
    items: Ints
    times: Ints

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> Ints:
        return np.diff(self.indptr)

    def items_of(self, k: int) -> Ints:
        return self.items[self.indptr[k] : self.indptr[k + 1]]

    def as_lists(self) -> list[list[int]]:
        return [row.tolist() for row in np.split(self.items, self.indptr[1:-1])]


def user_sequences(
    user_id: Ints,
    item_id: Ints,
    rating: npt.NDArray[np.float64],
    event_time: Ints,
    high_rating: float,
) -> Sequences:
    kept = rating >= high_rating
    users, items, times = user_id[kept], item_id[kept], event_time[kept]
    order = np.lexsort((items, times, users))
    users, items, times = users[order], items[order], times[order]
    distinct = np.ones(len(users), dtype=bool)
    distinct[1:] = (users[1:] != users[:-1]) | (times[1:] != times[:-1]) | (items[1:] != items[:-1])
    users, items, times = users[distinct], items[distinct], times[distinct]
    starts = (
        np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        if len(users)
        else np.empty(0, np.int64)
    )
    indptr = np.append(starts, len(users)).astype(np.int64)
    return Sequences(users[starts], indptr, items, times)


@dataclass(frozen=True)
class TransitionGraph:
    """Directed transition counts in CSR form over the items that occur in a transition.

    Node k is item `items[k]`; its out-edges are `indices[indptr[k]:indptr[k+1]]` (node
    numbers, ascending) with `counts` transitions each: integers, or with a half-life the
    transitions' decayed weights as of event time `as_of` (floats). An item's weight is the
    sum of its out-edges'.
    """

    items: Ints
    indptr: Ints
    indices: npt.NDArray[np.int32]
    counts: Ints | Floats
    as_of: int | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.items)

    @property
    def n_edges(self) -> int:
        return len(self.indices)

    @property
    def weights(self) -> Ints | Floats:
        cumulative = np.concatenate([[0], np.cumsum(self.counts)])
        weights: Ints | Floats = cumulative[self.indptr[1:]] - cumulative[self.indptr[:-1]]
        return weights

    @property
    def sources(self) -> npt.NDArray[np.int32]:
        """Source node of every edge (the CSR rows expanded)."""
        return np.repeat(np.arange(self.n_nodes, dtype=np.int32), np.diff(self.indptr))

    @classmethod
    def from_pairs(
        cls,
        src: Ints,
        dst: Ints,
        counts: Ints | Floats | None = None,
        as_of: int | None = None,
    ) -> TransitionGraph:
        """Sum the counts of each (src item, dst item) pair; `counts` defaults to ones, and
        float ones (weights as of `as_of`) stay floats."""
        items = np.unique(np.concatenate([src, dst]))
        n = len(items)
        keys = np.searchsorted(items, src).astype(np.int64) * n + np.searchsorted(items, dst)
        if counts is None:
            unique_keys, summed = np.unique(keys, return_counts=True)
        else:
            unique_keys, inverse = np.unique(keys, return_inverse=True)
            summed = np.bincount(inverse, weights=counts, minlength=len(unique_keys))
        rows = unique_keys // max(n, 1)
        indptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        is_float = counts is not None and counts.dtype.kind == "f"
        return cls(
            items,
            indptr,
            (unique_keys % max(n, 1)).astype(np.int32),
            summed.astype(np.float64 if is_float else np.int64),
            as_of,
        )

    def reverse(self) -> TransitionGraph:
        """The same counts with every edge turned around (in-neighbours become out-neighbours)."""
        src = self.items[self.sources]
        dst = self.items[self.indices]
        return TransitionGraph.from_pairs(dst, src, self.counts, self.as_of)

    def undirected(self, item_ids: Ints) -> sp.csr_matrix:
        """Weights between the items `item_ids` (sorted, unique) as a symmetric matrix over
        their positions: an edge a->b of weight c links a and b with weight c, both ways.
        Edges with an end outside `item_ids` are left out."""
        n = len(item_ids)
        at = np.minimum(np.searchsorted(item_ids, self.items), max(n - 1, 0))
        present = item_ids[at] == self.items if n else np.zeros(self.n_nodes, dtype=bool)
        src, dst = at[self.sources], at[self.indices]
        keep = present[self.sources] & present[self.indices]
        src, dst = src[keep], dst[keep]
        weights = self.counts[keep].astype(np.float64)
        return sp.csr_matrix(
            (
                np.concatenate([weights, weights]),
                (np.concatenate([src, dst]), np.concatenate([dst, src])),
            ),
            shape=(n, n),
        )

    def to_dict(self) -> dict[tuple[int, int], int] | dict[tuple[int, int], float]:
        """{(src item, dst item): count}: for comparing with other implementations in tests."""
        src = self.items[self.sources].tolist()
        dst = self.items[self.indices].tolist()
        return dict(zip(zip(src, dst, strict=True), self.counts.tolist(), strict=True))


def _transitions(sequences: Sequences) -> tuple[Ints, Ints, Ints]:
    """(src item, dst item, event time) of each transition: consecutive kept items of a user
    that differ, at the later one's event time (as the job releases them)."""
    items = sequences.items
    same_user = np.ones(max(len(items) - 1, 0), dtype=bool)
    same_user[sequences.indptr[1:-1] - 1] = False
    keep = same_user & (items[:-1] != items[1:])
    return items[:-1][keep], items[1:][keep], sequences.times[1:][keep]


def transition_count(sequences: Sequences) -> int:
    return len(_transitions(sequences)[0])


def transition_graph(sequences: Sequences, half_life_s: float | None = None) -> TransitionGraph:
    """The transition counts; with a half-life, decayed as of the newest transition."""
    src, dst, times = _transitions(sequences)
    return decayed_graph(src, dst, times, half_life_s)


def decayed_graph(src: Ints, dst: Ints, times: Ints, half_life_s: float | None) -> TransitionGraph:
    """The graph of transitions src -> dst at `times`: counts, or with a half-life h each
    transition at t weighing 2^((t - T) / h) as of T, the newest one's time (as
    `ItemNeighbours` weighs them)."""
    if half_life_s is None or len(times) == 0:
        return TransitionGraph.from_pairs(src, dst)
    as_of = int(times.max())
    return TransitionGraph.from_pairs(src, dst, np.exp2((times - as_of) / half_life_s), as_of)
