"""User vectors: a user's embedding from the vectors of their most recent kept items.

A user's recent items are the last `limit` items of their kept sequence (high ratings in
(event time, item) order, an item repeating the one before it counted once: the same
sequence the job pairs into transitions), oldest first. Their vector is a weighted average
of those items' directions (their vectors in **one** version, scaled to unit length): the
newest weighs 1, the one before `decay`, then `decay**2`, and so on. Directions, because
readers rank by cosine and a Word2Vec vector's length says how an item was trained (how
often, in how many contexts), not what it means: averaged raw, the longest vectors would
outweigh the recency weights. Items the version has no vector for are left out and the
other weights renormalised; a user none of whose recent items the version knows gets no
vector (counted by the caller, never filled with noise).

Recent items travel as a padded matrix: one row per user, `limit` columns, right-aligned
(the newest item in the last column), `NO_ITEM` where a user has fewer items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

from streaming.embeddings.vectors import Embeddings, Vectors, unit_rows

__all__ = [
    "NO_ITEM",
    "ItemDirections",
    "ItemRows",
    "padded",
    "recency_weights",
    "recent_items",
    "user_vectors",
]

NO_ITEM = -1
"""Padding of a recent-items row (item ids are non-negative)."""

_CHUNK = 65_536  # users per pass: a (chunk, dim) float32 gather stays in tens of MB
_DENSE_FACTOR, _DENSE_SLACK = 4, 1_000_000  # a lookup table up to 4 x the ids + 8 MB


def recent_items(sequence: Iterable[int], limit: int) -> list[int]:
    """The last `limit` items of a kept sequence, a repeat of the item before dropped."""
    collapsed: list[int] = []
    for item in sequence:
        if not collapsed or collapsed[-1] != item:
            collapsed.append(int(item))
    return collapsed[-limit:] if limit else []


def recency_weights(limit: int, decay: float) -> npt.NDArray[np.float64]:
    """Weights of a right-aligned row of `limit` items: the last column 1, the one before
    `decay`, ...; `decay` 1 weighs every recent item the same."""
    return decay ** np.arange(limit - 1, -1, -1, dtype=np.float64)


def padded(rows: Sequence[Sequence[int]], limit: int) -> npt.NDArray[np.int64]:
    """Users' recent items (oldest first, at most `limit` each) as a right-aligned matrix."""
    matrix = np.full((len(rows), limit), NO_ITEM, dtype=np.int64)
    for row, items in enumerate(rows):
        if len(items) > limit:
            raise ValueError(f"user row {row} has {len(items)} items, more than {limit}")
        if items:
            matrix[row, limit - len(items) :] = items
    return matrix


def user_vectors(
    recent: npt.NDArray[np.int64], items: ItemDirections, decay: float
) -> tuple[Vectors, npt.NDArray[np.bool_]]:
    """Each row's weighted average of the directions of its `items`, vectorised.

    Returns (vectors, has): `has[u]` is False for a user none of whose items `items`
    knows (their row of `vectors` is zeros and must not be served).
    """
    users, limit = recent.shape
    vectors = np.zeros((users, items.dim), dtype=np.float32)
    has = np.zeros(users, dtype=bool)
    if users == 0 or len(items.vectors) == 0 or limit == 0:
        return vectors, has
    weights = recency_weights(limit, decay).astype(np.float32)
    for start in range(0, users, _CHUNK):
        part = recent[start : start + _CHUNK]
        rows = items.rows(part)  # -1: no vector in this version
        mass = (rows >= 0) * weights  # (chunk, limit)
        total = mass.sum(axis=1)
        # rows x items, a user's weights at their items' columns: one sparse product sums
        # every user's weighted vectors (a C loop, where a gather per column copies them)
        weighted = csr_matrix(
            (mass.ravel(), np.maximum(rows, 0).ravel(), np.arange(0, rows.size + 1, limit)),
            shape=(len(part), len(items.vectors)),
        )
        summed = np.asarray(weighted @ items.vectors, dtype=np.float32)
        found = total > 0
        summed[found] /= total[found, None]
        vectors[start : start + len(part)] = summed
        has[start : start + len(part)] = found
    return vectors, has


ItemRows = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]]
"""Item ids -> their rows in an `Embeddings` (-1 for ids it lacks)."""


def item_rows(item_ids: npt.NDArray[np.int64]) -> ItemRows:
    """The rows of `item_ids`: a dense table when the ids are dense enough (one indexing per
    lookup, at most a few times the ids' own memory), else a binary search."""
    if len(item_ids) == 0:
        return lambda ids: np.full(np.shape(ids), -1, dtype=np.int64)
    largest = int(item_ids.max())
    if int(item_ids.min()) >= 0 and largest < _DENSE_FACTOR * len(item_ids) + _DENSE_SLACK:
        table = np.full(largest + 2, -1, dtype=np.int64)  # the last entry: out of range
        table[item_ids] = np.arange(len(item_ids))

        def dense(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            inside = np.where((ids >= 0) & (ids <= largest), ids, largest + 1)
            return np.asarray(table[inside], dtype=np.int64)

        return dense
    order = np.argsort(item_ids, kind="stable")
    sorted_ids = item_ids[order]

    def searched(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        slot = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[slot] == ids, order[slot], -1)

    return searched


@dataclass(frozen=True)
class ItemDirections:
    """One version's items as users are averaged from them: each item id's row (`rows`) and
    the item's vector scaled to unit length (`vectors`, a zero vector stays zero). Made once
    per version (`of`) and shared by every chunk of users averaged from it."""

    rows: ItemRows
    vectors: Vectors

    @classmethod
    def of(cls, embeddings: Embeddings) -> ItemDirections:
        return cls(item_rows(embeddings.item_ids), unit_rows(embeddings.vectors).astype(np.float32))

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])
