"""User vectors: a user's embedding from the vectors of their most recent kept items.

A user's recent items are the last `limit` items of their kept sequence (high ratings in
(event time, item) order, an item repeating the one before it counted once: the same
sequence the job pairs into transitions), oldest first. Their vector is a weighted average
of those items' vectors in **one** version: the newest weighs 1, the one before `decay`,
then `decay**2`, and so on. Items the version has no vector for are left out and the other
weights renormalised; a user none of whose recent items the version knows gets no vector
(counted by the caller, never filled with noise).

Recent items travel as a padded matrix: one row per user, `limit` columns, right-aligned
(the newest item in the last column), `NO_ITEM` where a user has fewer items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from streaming.embeddings.vectors import Embeddings, Vectors

__all__ = [
    "NO_ITEM",
    "padded",
    "recency_weights",
    "recent_items",
    "user_vectors",
]

NO_ITEM = -1
"""Padding of a recent-items row (item ids are non-negative)."""

_CHUNK = 32_768  # users per gather: chunk x limit x dim float32 stays in tens of MB


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
    recent: npt.NDArray[np.int64], embeddings: Embeddings, decay: float
) -> tuple[Vectors, npt.NDArray[np.bool_]]:
    """Each row's weighted average of `embeddings`' vectors of its items, vectorised.

    Returns (vectors, has): `has[u]` is False for a user none of whose items `embeddings`
    knows (their row of `vectors` is zeros and must not be served).
    """
    users, limit = recent.shape
    vectors = np.zeros((users, embeddings.dim), dtype=np.float32)
    has = np.zeros(users, dtype=bool)
    if users == 0 or len(embeddings) == 0 or limit == 0:
        return vectors, has
    order = np.argsort(embeddings.item_ids, kind="stable")
    sorted_ids = embeddings.item_ids[order]
    weights = recency_weights(limit, decay)
    for start in range(0, users, _CHUNK):
        part = recent[start : start + _CHUNK]
        slot = np.minimum(np.searchsorted(sorted_ids, part), len(sorted_ids) - 1)
        known = (part != NO_ITEM) & (sorted_ids[slot] == part)
        rows = order[slot]
        mass = known * weights  # (chunk, limit)
        total = mass.sum(axis=1)
        found = total > 0
        gathered = embeddings.vectors[rows]  # (chunk, limit, dim)
        summed = np.einsum("ul,uld->ud", mass, gathered, optimize=True)
        summed[found] /= total[found, None]
        vectors[start : start + len(part)] = summed
        has[start : start + len(part)] = found
    return vectors, has
