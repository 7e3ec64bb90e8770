"""Model maintenance between versions: incremental updates, aligned full retrains, the gate.

No Kafka or Redis here: the trainer loop feeds corpora in and publishes what comes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from gensim.models import Word2Vec
from scipy.linalg import orthogonal_procrustes

from streaming.config import TrainingSettings
from streaming.core.neighbours import neighbour_average
from streaming.embeddings.vectors import Embeddings, unit_rows
from streaming.embeddings.word2vec import train_word2vec, trained_vectors

__all__ = [
    "GateResult",
    "align",
    "gate",
    "hit_rate",
    "neighbour_overlap",
    "train_full",
    "train_incremental",
    "with_cold_items",
]


def train_full(corpus: Sequence[Sequence[str]], settings: TrainingSettings) -> Word2Vec:
    return train_word2vec(corpus, settings)


def train_incremental(
    model: Word2Vec, new: Sequence[Sequence[str]], replay: Sequence[Sequence[str]]
) -> Word2Vec:
    """Add the items of the new and replayed samples to the vocabulary and train on both.

    Replaying samples of the window keeps items that are absent from the new ones from
    drifting away from those that are present; their items join the vocabulary too, so none
    of them is skipped and no two items become adjacent that were not.
    """
    corpus = [*new, *replay]
    model.build_vocab(corpus, update=True)
    model.train(corpus, total_examples=len(corpus), epochs=model.epochs)
    return model


def align(embeddings: Embeddings, previous: Embeddings) -> Embeddings:
    """`embeddings` rotated onto `previous` (orthogonal Procrustes on the trained items both
    have), so a full retrain stays comparable with the version before it. Cold vectors are
    averages of trained ones, so the same rotation carries them along."""
    mine, theirs = ~embeddings.cold, ~previous.cold
    _, here, there = np.intersect1d(
        embeddings.item_ids[mine], previous.item_ids[theirs], return_indices=True
    )
    if len(here) < embeddings.dim:  # too few anchors for a stable rotation
        return embeddings
    rotation, _ = orthogonal_procrustes(
        embeddings.vectors[mine][here].astype(np.float64),
        previous.vectors[theirs][there].astype(np.float64),
    )
    rotated = (embeddings.vectors.astype(np.float64) @ rotation).astype(np.float32)
    return Embeddings(embeddings.item_ids, rotated, embeddings.cold)


def with_cold_items(
    model: Word2Vec, neighbours: Mapping[int, Mapping[int, int]]
) -> tuple[Embeddings, list[int]]:
    """Trained vectors plus neighbour averages for announced items the model lacks; and the
    items that have no neighbour with a vector (reported, never given noise)."""
    ids, vectors = trained_vectors(model)
    known = dict(zip(ids.tolist(), vectors, strict=True))
    cold_ids, cold_vectors, orphans = [], [], []
    for item in sorted(neighbours):
        if item in known:
            continue
        average = neighbour_average(neighbours[item], known)
        if average is None:
            orphans.append(item)
        else:
            cold_ids.append(item)
            cold_vectors.append(average)
    all_ids = np.concatenate([ids, np.array(cold_ids, dtype=np.int64)])
    stacked = np.vstack([vectors, *cold_vectors]) if cold_vectors else vectors
    cold = np.concatenate([np.zeros(len(ids), bool), np.ones(len(cold_ids), bool)])
    return Embeddings(all_ids, stacked.astype(np.float32), cold), orphans


def _rows_of(embeddings: Embeddings, items: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    order = np.argsort(embeddings.item_ids)
    return order[np.searchsorted(embeddings.item_ids[order], items)]


def _top_k(
    unit: npt.NDArray[np.float64], rows: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.intp]:
    scores = unit[rows] @ unit.T
    scores[np.arange(len(rows)), rows] = -np.inf
    return np.argpartition(-scores, k, axis=1)[:, :k]


def neighbour_overlap(
    candidate: Embeddings, current: Embeddings, items: Sequence[int], k: int = 10
) -> float:
    """Mean share of each item's top-k neighbours (among items both have) kept by `candidate`."""
    shared = np.intersect1d(candidate.item_ids, current.item_ids)
    probe = np.intersect1d(np.asarray(items, dtype=np.int64), shared)
    if len(probe) == 0 or len(shared) <= k:
        return 1.0
    queries = np.searchsorted(shared, probe)
    tops = [
        _top_k(unit_rows(e.vectors[_rows_of(e, shared)]), queries, k) for e in (candidate, current)
    ]
    return float(
        np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(*tops, strict=True)])
    )


def hit_rate(
    embeddings: Embeddings,
    samples: Sequence[Sequence[str]],
    k: int = 10,
    among: npt.NDArray[np.int64] | None = None,
) -> float:
    """Share of consecutive pairs (a, b) in `samples` whose b is among a's k nearest items
    (only items in `among`, when given, are queried, answered and ranked)."""
    return _share(_hits(embeddings, samples, k, among))


def _share(hits: npt.NDArray[np.bool_]) -> float:
    return float(np.mean(hits)) if len(hits) else 0.0


def _hits(
    embeddings: Embeddings,
    samples: Sequence[Sequence[str]],
    k: int,
    among: npt.NDArray[np.int64] | None,
) -> npt.NDArray[np.bool_]:
    """For each consecutive pair (a, b) of `samples` that can be scored (both items known,
    and more than k of them), whether b is among a's k nearest items."""
    ids = (
        np.sort(embeddings.item_ids)
        if among is None
        else np.intersect1d(embeddings.item_ids, among)
    )
    pairs = [(int(a), int(b)) for sample in samples for a, b in pairwise(sample) if a != b]
    at = {item: row for row, item in enumerate(ids.tolist())}
    rows = [(at[a], at[b]) for a, b in pairs if a in at and b in at]
    if not rows or len(ids) <= k:
        return np.zeros(0, dtype=bool)
    unit = unit_rows(embeddings.vectors[_rows_of(embeddings, ids)])
    tops = _top_k(unit, np.array([a for a, _ in rows]), k)
    return np.array([b in top for (_, b), top in zip(rows, tops.tolist(), strict=True)])


@dataclass(frozen=True)
class GateResult:
    passed: bool
    overlap: float
    hit_rate: float
    current_hit_rate: float
    reason: str


def gate(
    candidate: Embeddings,
    current: Embeddings | None,
    stable_items: Sequence[int],
    held_out: Sequence[Sequence[str]],
    min_overlap: float,
    min_quality_ratio: float,
    min_held_out: int,
) -> GateResult:
    """Publish `candidate` only if its held-out hit rate is not much worse than the current
    version's, and its neighbourhoods of stable items resemble the current version's unless
    it is better on held-out data: a weak early version must not veto every later one.

    Hit rates on fewer than `min_held_out` scored pairs are reported but decide nothing: on
    a few dozen pairs two equally good models differ by more than the gate's margins, and a
    rejection on noise leaves a worse version serving until new samples arrive."""
    if current is None:
        return GateResult(True, 1.0, hit_rate(candidate, held_out), 0.0, "first version")
    overlap = neighbour_overlap(candidate, current, stable_items)
    if not held_out:
        return GateResult(True, overlap, 0.0, 0.0, "no held-out samples to compare on")
    # Both ranked among the items both have trained: a version of 30 items must not look
    # better than one of 3,000 because it has fewer wrong answers to choose from, and a cold
    # vector (its neighbours' average, from counts that include the held-out transitions)
    # must not answer a held-out pair for a model that never learnt it.
    shared = np.intersect1d(candidate.item_ids[~candidate.cold], current.item_ids[~current.cold])
    hits = _hits(candidate, held_out, 10, shared)
    quality, baseline = _share(hits), hit_rate(current, held_out, among=shared)
    if len(hits) < min_held_out:
        reason = f"{len(hits)} held-out pairs scored, fewer than {min_held_out} to compare on"
        return GateResult(True, overlap, quality, baseline, reason)
    if overlap < min_overlap and quality <= baseline:
        reason = (
            f"top-10 neighbour overlap {overlap:.2f} < {min_overlap:.2f} and held-out HR@10 "
            f"{quality:.3f} no better than current {baseline:.3f}"
        )
        return GateResult(False, overlap, quality, baseline, reason)
    if quality < min_quality_ratio * baseline:
        reason = f"held-out HR@10 {quality:.3f} < {min_quality_ratio:.2f} x current {baseline:.3f}"
        return GateResult(False, overlap, quality, baseline, reason)
    if overlap < min_overlap:
        return GateResult(True, overlap, quality, baseline, "moved, but better on held-out data")
    return GateResult(True, overlap, quality, baseline, "passed")
