"""DeepWalk / Node2vec walks over a `TransitionGraph`, vectorised across walks.

All walks advance together, one hop per round: a round is a few NumPy array operations over
every live walk, so a hop costs O(1) expected with no Python loop per walk. A guide table
(one slot per out-edge, built once in O(E)) points each draw at its neighbour or just before
it in the item's cumulative counts (Chen and Asau's indexed search); a short forward scan
finishes it. Walks are split into fixed-size blocks, each with
its own seed derived from the run's seed, and blocks run on a thread pool (NumPy releases
the GIL in the heavy calls): the result depends on the seed only, never on the thread count.

Semantics (fixing the reference's sampler): the start item is drawn with probability
weight / total weight; each hop picks an out-neighbour with probability count / weight; a walk
stops early at an item with no out-edges (the rest of its row is -1). Node2vec's return (p)
and in-out (q) parameters bias the hop by the previous item, with exact rejection sampling.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from streaming.embeddings.graph import TransitionGraph

__all__ = ["WalkSampler", "as_sentences"]

_BLOCK = 16_384
Walks = npt.NDArray[np.int32]


@dataclass(frozen=True)
class _Tables:
    cumulative: npt.NDArray[np.int64]  # inclusive cumulative edge counts
    row_base: npt.NDArray[np.int64]  # cumulative count before each node's first edge
    weights: npt.NDArray[np.int64]
    degrees: npt.NDArray[np.int64]
    guide: npt.NDArray[np.int64]  # per edge slot: first edge that a draw in the slot can hit
    start_cumulative: npt.NDArray[np.int64]
    edge_keys: npt.NDArray[np.int64] | None  # src * n + dst, sorted: Node2vec's edge test


class WalkSampler:
    """Build once per graph (O(E)); sample any number of walks from it."""

    def __init__(self, graph: TransitionGraph, p: float = 1.0, q: float = 1.0) -> None:
        if p <= 0 or q <= 0:
            raise ValueError(f"Node2vec p and q must be positive, got p={p}, q={q}")
        if graph.n_edges == 0:
            raise ValueError("the graph has no transitions to walk")
        if graph.counts.dtype.kind == "f":
            graph = replace(graph, counts=_quantized(graph.counts.astype(np.float64)))
        self.graph = graph
        self.p, self.q = p, q
        cumulative = np.cumsum(graph.counts.astype(np.int64, copy=False))
        weights = graph.weights.astype(np.int64, copy=False)
        row_base = np.concatenate([[0], cumulative])[graph.indptr[:-1]]
        degrees = np.diff(graph.indptr)
        # Slot s of node v covers draws t in [ceil(s*w/d), ceil((s+1)*w/d)); its guide entry is
        # the first edge whose cumulative count exceeds the slot's smallest draw.
        sources = graph.sources
        slot = np.arange(graph.n_edges, dtype=np.int64) - graph.indptr[sources]
        lowest = -((-slot * weights[sources]) // degrees[sources])
        guide = np.searchsorted(cumulative, row_base[sources] + lowest, side="right")
        second_order = not (p == 1.0 and q == 1.0)
        self._tables = _Tables(
            cumulative=cumulative,
            row_base=row_base,
            weights=weights,
            degrees=degrees,
            guide=guide,
            start_cumulative=np.cumsum(weights),
            edge_keys=(
                graph.sources.astype(np.int64) * graph.n_nodes + graph.indices
                if second_order
                else None
            ),
        )
        # Acceptance of a proposed hop is bias / max bias (exact rejection sampling).
        self._bias_max = max(1.0 / p, 1.0, 1.0 / q)

    def sample(
        self,
        n_walks: int,
        length: int,
        seed: int,
        threads: int | None = None,
    ) -> Walks:
        """`n_walks` x `length` node numbers (see `graph.items`), -1 after an early stop."""
        if n_walks < 0 or length < 1:
            raise ValueError(f"need n_walks >= 0 and length >= 1, got {n_walks}, {length}")
        return self._sample(np.full((n_walks, length), -1, dtype=np.int32), seed, threads)

    def sample_from(
        self,
        starts: npt.NDArray[np.int32],
        length: int,
        seed: int,
        threads: int | None = None,
    ) -> Walks:
        """One walk of `length` from each of `starts` (node numbers), as `sample` draws them
        from there on: the walks the streaming job starts where new transitions leave from."""
        if length < 1:
            raise ValueError(f"need length >= 1, got {length}")
        walks = np.full((len(starts), length), -1, dtype=np.int32)
        walks[:, 0] = starts
        return self._sample(walks, seed, threads, given_starts=True)

    def _sample(
        self, walks: Walks, seed: int, threads: int | None, given_starts: bool = False
    ) -> Walks:
        n_walks = len(walks)
        blocks = [(start, min(start + _BLOCK, n_walks)) for start in range(0, n_walks, _BLOCK)]
        seeds = np.random.SeedSequence(seed).spawn(len(blocks))
        workers = threads or os.cpu_count() or 1

        def run(block: int) -> None:
            start, stop = blocks[block]
            self._walk_block(walks[start:stop], np.random.default_rng(seeds[block]), given_starts)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(len(blocks))))  # list() re-raises a block's error
        return walks

    def _walk_block(self, out: Walks, rng: np.random.Generator, given_starts: bool) -> None:
        tables = self._tables
        if given_starts:
            current = out[:, 0].copy()
        else:
            total = int(tables.start_cumulative[-1])
            current = np.searchsorted(
                tables.start_cumulative, rng.integers(0, total, size=len(out)), side="right"
            ).astype(np.int32)
            out[:, 0] = current
        rows = np.arange(len(out))
        previous: npt.NDArray[np.int32] | None = None
        for step in range(1, out.shape[1]):
            alive = tables.weights[current] > 0
            if not alive.all():
                rows, current = rows[alive], current[alive]
                previous = previous[alive] if previous is not None else None
            if len(rows) == 0:
                return
            if tables.edge_keys is None or previous is None:
                chosen = self._hop(current, rng)
            else:
                chosen = self._biased_hop(previous, current, rng)
            out[rows, step] = chosen
            previous, current = current, chosen

    def _hop(
        self, current: npt.NDArray[np.int32], rng: np.random.Generator
    ) -> npt.NDArray[np.int32]:
        tables = self._tables
        weights = tables.weights[current]
        draws = rng.integers(0, weights)
        edges = tables.guide[
            self.graph.indptr[current] + draws * tables.degrees[current] // weights
        ]
        targets = tables.row_base[current] + draws
        behind = np.flatnonzero(tables.cumulative[edges] <= targets)
        while len(behind):
            edges[behind] += 1
            behind = behind[tables.cumulative[edges[behind]] <= targets[behind]]
        chosen: npt.NDArray[np.int32] = self.graph.indices[edges]
        return chosen

    def _biased_hop(
        self,
        previous: npt.NDArray[np.int32],
        current: npt.NDArray[np.int32],
        rng: np.random.Generator,
    ) -> npt.NDArray[np.int32]:
        edge_keys = self._tables.edge_keys
        assert edge_keys is not None
        n = self.graph.n_nodes
        chosen = np.empty_like(current)
        pending = np.arange(len(current))
        while len(pending):
            proposal = self._hop(current[pending], rng)
            before = previous[pending]
            keys = before.astype(np.int64) * n + proposal
            at = np.minimum(np.searchsorted(edge_keys, keys), len(edge_keys) - 1)
            bias = np.where(edge_keys[at] == keys, 1.0, 1.0 / self.q)
            bias = np.where(proposal == before, 1.0 / self.p, bias)
            accepted = rng.random(len(pending)) * self._bias_max < bias
            chosen[pending[accepted]] = proposal[accepted]
            pending = pending[~accepted]
        return chosen


_QUANTUM_BITS = 32


def _quantized(weights: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Decayed weights as integers for the integer draws: the heaviest edge as 2^32, each
    other in proportion, rounded (a weight below 2^-33 of the heaviest, over 32 half-lives
    older, becomes 0 and is never drawn). The sum stays within int64 up to 2^31 edges."""
    scale = 2.0**_QUANTUM_BITS / weights.max()
    quantized: npt.NDArray[np.int64] = np.rint(weights * scale).astype(np.int64)
    return quantized


def as_sentences(walks: Walks, items: npt.NDArray[np.int64]) -> list[list[str]]:
    """Walks as Word2Vec sentences of item-id strings, cut where each walk stopped.

    One gather over an object array of shared strings instead of a loop over walks.
    """
    names = items.astype(str).astype(object)
    sentences: list[list[str]] = names[np.maximum(walks, 0)].tolist()
    lengths = (walks >= 0).sum(axis=1)
    for row in np.flatnonzero(lengths < walks.shape[1]).tolist():
        del sentences[row][lengths[row] :]
    return sentences
