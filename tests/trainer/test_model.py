"""Cold-start averages, Procrustes alignment and the drift gate, on hand-made data."""

from __future__ import annotations

import numpy as np
from gensim.models import Word2Vec

from streaming.embeddings.vectors import Embeddings
from streaming.trainer.model import (
    align,
    gate,
    hit_rate,
    neighbour_overlap,
    train_incremental,
    with_cold_items,
)


def _tiny_model() -> Word2Vec:
    corpus = [["1", "2", "3"], ["2", "3", "1"], ["3", "1", "2"]] * 20
    return Word2Vec(corpus, vector_size=4, min_count=1, epochs=2, seed=1, workers=1)


HELD_OUT = [[str(i), str(i + 10), str(i + 20)] for i in range(150)]
"""Held-out walks inside a cluster of `_clustered`: items i and i + 10 share a centre."""
PAIRS = 300
"""The pairs they hold."""


def test_cold_items_get_the_count_weighted_average_of_neighbours_with_vectors() -> None:
    model = _tiny_model()
    v = {int(key): model.wv[key] for key in model.wv.index_to_key}
    neighbours = {
        7: {1: 3, 2: 1},  # both trained
        8: {3: 2, 99: 5},  # 99 has no vector: only 3 counts
        9: {98: 1},  # no neighbour with a vector: reported, no vector
        1: {2: 1},  # trained already: keeps its trained vector
    }
    embeddings, orphans = with_cold_items(model, neighbours)
    got = embeddings.as_dict()
    np.testing.assert_allclose(got[7], (3 * v[1] + 1 * v[2]) / 4, rtol=1e-6)
    np.testing.assert_allclose(got[8], v[3], rtol=1e-6)
    np.testing.assert_array_equal(got[1], v[1])
    assert orphans == [9]
    assert sorted(embeddings.item_ids[embeddings.cold].tolist()) == [7, 8]
    assert 9 not in got


def _embeddings(vectors: np.ndarray, cold: np.ndarray | None = None) -> Embeddings:
    ids = np.arange(len(vectors), dtype=np.int64)
    flags = np.zeros(len(vectors), bool) if cold is None else cold
    return Embeddings(ids, vectors.astype(np.float32), flags)


def _clustered(rng: np.random.Generator, n: int = 200, dim: int = 8) -> np.ndarray:
    centres = rng.standard_normal((10, dim)) * 5
    return centres[np.arange(n) % 10] + rng.standard_normal((n, dim))


def test_align_undoes_a_rotation_and_carries_cold_vectors_along() -> None:
    rng = np.random.default_rng(0)
    previous = _embeddings(_clustered(rng))
    rotation, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    cold = np.zeros(200, bool)
    cold[:5] = True
    rotated = _embeddings(previous.vectors @ rotation, cold)
    restored = align(rotated, previous)
    np.testing.assert_allclose(restored.vectors, previous.vectors, atol=1e-4)


def test_the_gate_passes_a_close_candidate_and_rejects_a_corrupted_one() -> None:
    rng = np.random.default_rng(1)
    current = _embeddings(_clustered(rng))
    stable = list(range(100))
    close = _embeddings(current.vectors + 0.05 * rng.standard_normal(current.vectors.shape))
    verdict = gate(close, current, stable, HELD_OUT, 0.5, 0.8, PAIRS)
    assert verdict.passed, verdict.reason
    assert verdict.overlap > 0.9
    assert hit_rate(current, HELD_OUT) > 0.4  # 19 cluster mates compete for 10 places; chance 0.05

    corrupted = _embeddings(rng.standard_normal(current.vectors.shape))
    verdict = gate(corrupted, current, stable, HELD_OUT, 0.5, 0.8, PAIRS)
    assert not verdict.passed
    assert "overlap" in verdict.reason
    assert neighbour_overlap(corrupted, current, stable) < 0.2
    # overlap alone would pass a candidate with scrambled quality only if allowed to
    verdict = gate(corrupted, current, stable, HELD_OUT, 0.0, 0.8, PAIRS)
    assert not verdict.passed
    assert "HR@10" in verdict.reason


def test_the_gate_decides_nothing_on_fewer_held_out_pairs_than_its_minimum() -> None:
    rng = np.random.default_rng(1)
    current = _embeddings(_clustered(rng))
    corrupted = _embeddings(rng.standard_normal(current.vectors.shape))
    for min_overlap in (0.5, 0.0):  # rejected for moving, then for its hit rate alone
        verdict = gate(corrupted, current, list(range(100)), HELD_OUT, min_overlap, 0.8, PAIRS)
        assert not verdict.passed
        verdict = gate(corrupted, current, list(range(100)), HELD_OUT, min_overlap, 0.8, PAIRS + 1)
        assert verdict.passed
        assert verdict.reason == "300 held-out pairs scored, fewer than 301 to compare on"
        assert verdict.hit_rate < 0.2 < 0.4 < verdict.current_hit_rate  # measured all the same


def test_the_gate_lets_a_better_model_replace_a_weak_one_that_it_does_not_resemble() -> None:
    rng = np.random.default_rng(2)
    good = _embeddings(_clustered(rng))
    weak = _embeddings(rng.standard_normal(good.vectors.shape))  # e.g. trained on 15 samples
    verdict = gate(good, weak, list(range(100)), HELD_OUT, 0.5, 0.8, PAIRS)
    assert verdict.overlap < 0.2
    assert verdict.hit_rate > verdict.current_hit_rate
    assert verdict.passed, verdict.reason


def test_the_gate_compares_hit_rates_among_the_items_both_versions_know() -> None:
    rng = np.random.default_rng(3)
    candidate = _embeddings(_clustered(rng))
    small = Embeddings(candidate.item_ids[:40], candidate.vectors[:40], candidate.cold[:40])
    # among its own 40 items the small version answers more (fewer wrong items to rank)
    assert hit_rate(small, HELD_OUT) > hit_rate(candidate, HELD_OUT)
    verdict = gate(candidate, small, list(range(40)), HELD_OUT, 0.5, 1, PAIRS)
    assert verdict.hit_rate == verdict.current_hit_rate  # the same vectors, on the same footing
    assert verdict.passed, verdict.reason


def test_the_gate_does_not_let_a_cold_vector_answer_a_held_out_pair() -> None:
    rng = np.random.default_rng(4)
    ids = np.arange(1, 41, dtype=np.int64)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    near = vectors.copy()
    near[1] = vectors[0]  # item 2, cold: its neighbours' average, which held-out 1 -> 2 built
    cold = np.zeros(40, dtype=bool)
    cold[1] = True
    current = Embeddings(ids, near, cold)
    candidate = Embeddings(ids, vectors, np.zeros(40, dtype=bool))
    verdict = gate(candidate, current, [3, 4, 5], [["1", "2"]], 0.2, 0.7, min_held_out=1)
    assert verdict.current_hit_rate == 0.0  # 2 is not among the items both have trained
    assert hit_rate(current, [["1", "2"]]) == 1.0  # which it would have answered


def test_an_incremental_update_learns_the_items_only_its_replay_has() -> None:
    base = Word2Vec([["1", "2", "3"]] * 20, vector_size=4, min_count=1, seed=1, workers=1)
    updated = train_incremental(base, [["1", "2"]], [["3", "9", "2"]])
    assert "9" in updated.wv  # not skipped, which would make 3 and 2 adjacent
