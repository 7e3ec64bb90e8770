"""Nearest items of one version, searched in the reader's process.

The publisher builds an HNSW index (usearch) of a version's unit vectors once, before the
version becomes current, and stores it next to the version (`streaming.store.versions`);
readers load it once per version and search it locally. The index stores float32 vectors,
so its scores are exact cosines: only the graph search is approximate. Items added to the
version after the index was built (cold items) are scanned exactly and merged. A version
without an index is scanned exactly as a whole.

An index blob is parsed by usearch's own loader (no pickle), which trusts the structure it
reads: `load_index` first checks the blob against the BLAKE2b digest the publisher stored
with it, so a truncated or corrupted blob is an error, never parsed.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from usearch.index import BatchMatches, Index

from streaming.errors import StoreError

__all__ = [
    "Neighbours",
    "build_index",
    "digest",
    "load_index",
    "unit_rows",
]

Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Found = list[tuple[int, float]]

# HNSW build: 16 links per node, 64 candidates per insert; a search explores 64 candidates.
# Measured at 200,000 x 64 in planted communities: recall@10 0.9975 against exact cosine
# (0.9995 at 128, half the queries/s); 12 links and 40 candidates per insert halve the build
# but fall below 0.99 (bench_serving, docs/benchmarks.md).
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 64
# Exact scans compare at most this many query-item pairs at once (memory of a score block).
_SCAN_BLOCK = 4_000_000


def unit_rows(vectors: npt.NDArray[np.float32]) -> Matrix:
    """Rows scaled to length 1 (zero rows stay zero), as C-contiguous float32."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.size == 0:
        return matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1), dtype=np.float32)


def digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=32).hexdigest()


def build_index(item_ids: Ids, vectors: npt.NDArray[np.float32], threads: int = 0) -> bytes:
    """An HNSW index of the unit `vectors` keyed by item id, serialized (usearch format).

    `threads` 0 uses every core."""
    ids = np.asarray(item_ids, dtype=np.int64)
    if len(ids) and int(ids.min()) < 0:
        raise ValueError("item ids must be >= 0 to key the index")
    unit = unit_rows(vectors)
    index = Index(
        ndim=unit.shape[1],
        metric="ip",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
    )
    index.add(ids.astype(np.uint64), unit, threads=threads)
    blob = index.save()
    assert blob is not None  # save() without a path returns the bytes
    return bytes(blob)


def load_index(blob: bytes, expected_digest: str, dim: int, count: int) -> Index:
    """The index in `blob`, after checking it is the one the publisher stored."""
    if digest(blob) != expected_digest:
        raise StoreError(
            "the version's index does not match its digest (truncated or corrupted in Redis): "
            "not loaded; republish the version"
        )
    try:
        index = Index.restore(blob, expansion_search=EXPANSION_SEARCH)
    except (ValueError, RuntimeError) as exc:
        raise StoreError(f"the version's index cannot be read: {exc}") from None
    if index is None or index.ndim != dim or len(index) != count:
        raise StoreError(f"the version's index does not hold {count} vectors of dimension {dim}")
    return index


@dataclass
class Neighbours:
    """Search over one version at one size: an optional index, plus items scanned exactly.

    Every vector comes from the same version; scores are cosines.
    """

    index: Index | None
    ids: Ids
    unit: Matrix
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def size(self) -> int:
        return (len(self.index) if self.index is not None else 0) + len(self.ids)

    def nearest(self, queries: npt.NDArray[np.float32], k: int, exclude: Ids | None) -> list[Found]:
        """For each query row, the `k` nearest items, best first; the item ids in `exclude[i]`
        (one per query, or a row of them per query padded with -1) are left out of row i's
        answer."""
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        unit = unit_rows(queries)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(len(queries), -1)
        want = k + (exclude.shape[1] if exclude is not None else 0)
        parts = [self._scan(unit, want)]
        if self.index is not None and len(self.index):
            parts.append(self._search(unit, want))
        ids = np.concatenate([p[0] for p in parts], axis=1)
        scores = np.concatenate([p[1] for p in parts], axis=1)
        if exclude is not None:
            excluded = (ids[:, :, None] == exclude[:, None, :]).any(axis=2)
            scores = np.where(excluded, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_ids = np.take_along_axis(ids, order, axis=1)
        top_scores = np.take_along_axis(scores, order, axis=1)
        return [
            [
                (int(item), float(score))
                for item, score in zip(row_ids, row_scores, strict=True)
                if np.isfinite(score)
            ]
            for row_ids, row_scores in zip(top_ids.tolist(), top_scores.tolist(), strict=True)
        ]

    def _search(self, unit: Matrix, want: int) -> tuple[Ids, npt.NDArray[np.float64]]:
        assert self.index is not None
        with self._lock:  # one search at a time per index; it uses every core itself
            matches = self.index.search(unit, want)
        width = want if isinstance(matches, BatchMatches) else len(matches.keys)
        keys = np.zeros((len(unit), width), dtype=np.uint64)
        distances = np.full((len(unit), width), np.inf)
        if isinstance(matches, BatchMatches):
            keys[:] = matches.keys
            distances[:] = matches.distances
            counts = np.asarray(matches.counts).reshape(len(unit))
        else:  # one query: the matches it found, trimmed to their count
            keys[0] = matches.keys
            distances[0] = matches.distances
            counts = np.array([width])
        valid = np.arange(width)[None, :] < counts[:, None]
        return keys.astype(np.int64), np.where(valid, 1.0 - distances, -np.inf)

    def _scan(self, unit: Matrix, want: int) -> tuple[Ids, npt.NDArray[np.float64]]:
        """Exact top-`want` of the scanned items by partial selection, in blocks of queries."""
        n = len(self.ids)
        take = min(want, n)
        ids = np.zeros((len(unit), take), dtype=np.int64)
        scores = np.full((len(unit), take), -np.inf)
        if take == 0:
            return ids, scores
        block = max(1, _SCAN_BLOCK // n)
        for start in range(0, len(unit), block):
            rows = slice(start, start + block)
            all_scores = unit[rows] @ self.unit.T
            if take < n:
                top = np.argpartition(-all_scores, take - 1, axis=1)[:, :take]
            else:
                top = np.broadcast_to(np.arange(n), all_scores.shape)
            ids[rows] = self.ids[top]
            scores[rows] = np.take_along_axis(all_scores, top, axis=1)
        return ids, scores
