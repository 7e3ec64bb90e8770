"""Nearest items of one version, searched in the reader's process.

The publisher builds an HNSW graph (usearch) of a version's unit vectors once, before the
version becomes current, and stores it next to the version (`streaming.store.versions`),
together with the rows it was built from: the item ids and their float32 unit vectors.
Readers load both once per version and search locally. The graph holds the vectors
quantized to int8, which builds faster than float32 (1.6 times at 1,000,000 items); a search
takes `RERANK_EXTRA` more candidates from it than asked for and ranks them by their exact
float32 cosines, so every score is exact and only the candidate search is approximate.
An index of fewer than `EXACT_BELOW` rows is not searched through its graph: its rows are
scanned exactly. Items added to the version after the index was built (cold items) are
scanned exactly and merged. A version without an index is scanned exactly as a whole.

A graph blob is parsed by usearch's own loader (no pickle), which trusts the structure it
reads: `load_index` first checks both blobs against the BLAKE2b digest the publisher stored
with them, so a truncated or corrupted blob is an error, never parsed.
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
    "EXACT_BELOW",
    "BuiltIndex",
    "ItemIndex",
    "Neighbours",
    "build_index",
    "graph_only",
    "load_index",
    "unit_rows",
]

Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]
Found = list[tuple[int, float]]

EXACT_BELOW = 1_000
"""An index of fewer rows than this is scanned exactly instead of searched through its graph.
On so few items an exact scan costs tens of microseconds per query (less than the graph search
with its re-rank) and is always right, so a graph search there would only risk recall: a graph
built on several threads can miss a true neighbour even among a few hundred items."""

# HNSW build: 12 links per node, 56 candidates per insert; a search explores 128 candidates
# and re-ranks RERANK_EXTRA more than asked for by exact cosine. Measured on planted
# communities (bench_serving, docs/benchmarks.md): recall@10 >= 0.99 at 200,000 and
# 1,000,000 x 64. 64 candidates build 1.25x slower at 1,000,000 for recall above what is
# asked; 48 fall below 0.99 there, and fewer links (10) build slower.
CONNECTIVITY = 12
EXPANSION_ADD = 56
EXPANSION_SEARCH = 128
RERANK_EXTRA = 30
# Exact scans compare at most this many query-item pairs at once (memory of a score block).
_SCAN_BLOCK = 4_000_000
# Scoring candidates gathers at most this many of their vector components at once (32 MB).
_RERANK_FLOATS = 8_000_000
_ID = np.dtype("<i8")
_COMPONENT = np.dtype("<f4")


def unit_rows(vectors: npt.NDArray[np.float32]) -> Matrix:
    """Rows scaled to length 1 (zero rows stay zero), as C-contiguous float32."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.size == 0:
        return matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1), dtype=np.float32)


@dataclass(frozen=True)
class BuiltIndex:
    """A version's index as the publisher stores it: `rows` holds the item ids (int64
    little-endian) followed by their unit vectors (float32 little-endian), in the order of
    the graph's keys; `graph` is the usearch HNSW graph keyed by row number."""

    rows: bytes
    graph: bytes
    count: int

    @property
    def digest(self) -> str:
        return _digest(self.rows, self.graph)


def graph_only(graph: bytes, expected_digest: str) -> bool:
    """Whether `graph` is an index in the format walkstream wrote before a version's rows had
    their own key: one graph keyed by item id, its digest over the graph alone. Readers scan
    such a version exactly rather than parse a graph they cannot re-rank."""
    return hashlib.blake2b(graph, digest_size=32).hexdigest() == expected_digest


def _digest(rows: bytes, graph: bytes) -> str:
    hasher = hashlib.blake2b(digest_size=32)
    for blob in (rows, graph):
        hasher.update(len(blob).to_bytes(8, "little"))
        hasher.update(blob)
    return hasher.hexdigest()


@dataclass(frozen=True)
class ItemIndex:
    """A loaded index: the graph, and the ids and exact unit vectors of its rows."""

    graph: Index
    ids: Ids
    unit: Matrix


def build_index(item_ids: Ids, vectors: npt.NDArray[np.float32], threads: int = 0) -> BuiltIndex:
    """The index of `vectors` (one row per item id), serialized. `threads` 0 uses every
    core."""
    ids = np.ascontiguousarray(item_ids, dtype=_ID)
    unit = unit_rows(vectors)
    if len(ids) != len(unit):
        raise ValueError(f"{len(ids)} item ids for {len(unit)} vectors")
    graph = Index(
        ndim=unit.shape[1],
        metric="ip",
        dtype="i8",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
    )
    graph.add(np.arange(len(ids), dtype=np.uint64), unit, threads=threads)
    blob = graph.save()
    assert blob is not None  # save() without a path returns the bytes
    return BuiltIndex(
        ids.tobytes() + unit.astype(_COMPONENT, copy=False).tobytes(), bytes(blob), len(ids)
    )


def load_index(rows: bytes, graph: bytes, expected_digest: str, dim: int, count: int) -> ItemIndex:
    """The index in `rows` and `graph`, after checking they are the ones the publisher
    stored."""
    if _digest(rows, graph) != expected_digest:
        raise StoreError(
            "the version's index does not match its digest (truncated or corrupted in Redis): "
            "not loaded; republish the version"
        )
    if len(rows) != count * (_ID.itemsize + dim * _COMPONENT.itemsize):
        raise StoreError(f"the version's index does not hold {count} vectors of dimension {dim}")
    try:
        index = Index.restore(graph, expansion_search=EXPANSION_SEARCH)
    except (ValueError, RuntimeError) as exc:
        raise StoreError(f"the version's index cannot be read: {exc}") from None
    if index is None or index.ndim != dim or len(index) != count:
        raise StoreError(f"the version's index does not hold {count} vectors of dimension {dim}")
    split = count * _ID.itemsize
    ids = np.frombuffer(rows, dtype=_ID, count=count).astype(np.int64, copy=False)
    unit = np.frombuffer(rows, dtype=_COMPONENT, offset=split).astype(np.float32, copy=False)
    return ItemIndex(index, ids, unit.reshape(count, dim))


@dataclass
class Neighbours:
    """Search over one version at one size: an optional index, plus items scanned exactly.

    The index's graph is searched when it holds at least `EXACT_BELOW` rows; a smaller index
    has its rows scanned exactly. Every vector comes from the same version; scores are
    cosines.
    """

    index: ItemIndex | None
    ids: Ids
    unit: Matrix
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def size(self) -> int:
        return (len(self.index.ids) if self.index is not None else 0) + len(self.ids)

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
        parts = [_exact_top(unit, want, self.ids, self.unit)]
        if self.index is not None and len(self.index.ids) >= EXACT_BELOW:
            parts.append(self._search(unit, want))
        elif self.index is not None:
            parts.append(_exact_top(unit, want, self.index.ids, self.index.unit))
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

    def _search(self, unit: Matrix, want: int) -> tuple[Ids, Scores]:
        """The graph's `want + RERANK_EXTRA` candidates per query, scored by exact cosine."""
        assert self.index is not None
        with self._lock:  # one search at a time per index; it uses every core itself
            matches = self.index.graph.search(unit, want + RERANK_EXTRA)
        if isinstance(matches, BatchMatches):
            keys = np.asarray(matches.keys)
            counts = np.asarray(matches.counts).reshape(len(unit))
        else:  # one query: the matches it found
            keys = np.asarray(matches.keys).reshape(1, -1)
            counts = np.array([keys.shape[1]])
        found = np.arange(keys.shape[1])[None, :] < counts[:, None]
        rows = np.where(found, keys, 0).astype(np.int64)
        scores = _cosines(unit, self.index.unit, rows)
        return self.index.ids[rows], np.where(found, scores, -np.inf)


def _exact_top(queries: Matrix, want: int, ids: Ids, unit: Matrix) -> tuple[Ids, Scores]:
    """For each query row, the `want` items (of `ids`, whose unit vectors are the rows of
    `unit`) with the highest cosines, in no particular order, or every item when there are
    fewer: exact, selected by partial selection in blocks of queries, then scored by
    `_cosines`."""
    n = len(ids)
    take = min(want, n)
    top = np.zeros((len(queries), take), dtype=np.int64)
    if take == 0:
        return top, np.full(top.shape, -np.inf)
    block = max(1, _SCAN_BLOCK // n)
    for start in range(0, len(queries), block):
        rows = slice(start, start + block)
        all_scores = queries[rows] @ unit.T
        if take < n:
            top[rows] = np.argpartition(-all_scores, take - 1, axis=1)[:, :take]
        else:
            top[rows] = np.arange(n)
    return ids[top], _cosines(queries, unit, top)


def _cosines(queries: Matrix, unit: Matrix, rows: Ids) -> Scores:
    """Cosine of query row i with each unit vector `unit[rows[i]]`, query by query, so that a
    score does not depend on the other queries of the batch (a matrix product's last bits
    do)."""
    scores = np.empty(rows.shape, dtype=np.float64)
    block = max(1, _RERANK_FLOATS // max(1, rows.shape[1] * queries.shape[1]))
    for start in range(0, len(queries), block):
        part = slice(start, start + block)
        scores[part] = np.einsum("qd,qcd->qc", queries[part], unit[rows[part]])
    return scores
