"""Walks on a 5-node toy graph with known counts: exact structure, seeded statistics."""

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from scipy.stats import chisquare

from streaming.embeddings.graph import TransitionGraph
from streaming.embeddings.walks import WalkSampler, as_sentences

# item -> {next item: count}; item 5 has no out-edges (walks stop there)
EDGES = {
    1: {2: 30, 3: 10, 4: 60},
    2: {1: 5, 3: 15},
    3: {4: 1, 5: 3},
    4: {1: 8, 2: 2, 5: 10},
}


def _graph(scale: float | None = None) -> TransitionGraph:
    """The toy graph; with a `scale`, as decayed (float) weights in proportion to the counts."""
    src, dst, counts = zip(
        *[(s, d, c) for s, row in EDGES.items() for d, c in row.items()], strict=True
    )
    weights = np.array(counts) if scale is None else np.array(counts) * scale
    return TransitionGraph.from_pairs(
        np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), weights
    )


WEIGHTS = pytest.mark.parametrize("scale", [None, 2.0**-30], ids=["counts", "decayed"])


def _as_items(graph: TransitionGraph, walks: np.ndarray) -> list[list[int]]:
    return [[int(graph.items[n]) for n in walk if n >= 0] for walk in walks]


def test_sentences_are_item_ids_cut_where_walks_stopped() -> None:
    walks = np.array([[0, 2, 1], [3, -1, -1], [1, 0, -1]], dtype=np.int32)
    items = np.array([10, 20, 30, 40], dtype=np.int64)
    assert as_sentences(walks, items) == [["10", "30", "20"], ["40"], ["20", "10"]]


@WEIGHTS
def test_starts_follow_item_weights(scale: float | None) -> None:
    graph = _graph(scale)
    walks = _as_items(graph, WalkSampler(graph).sample(40_000, 1, seed=1))
    starts = Counter(walk[0] for walk in walks)
    weights = {item: sum(row.values()) for item, row in EDGES.items()}
    assert set(starts) == set(weights)  # item 5 has weight 0: never a start
    total = sum(weights.values())
    observed = [starts[item] for item in weights]
    expected = [40_000 * w / total for w in weights.values()]
    assert chisquare(observed, expected).pvalue > 0.01


@WEIGHTS
def test_hops_follow_transition_counts(scale: float | None) -> None:
    graph = _graph(scale)
    walks = _as_items(graph, WalkSampler(graph).sample(20_000, 8, seed=2))
    hops: dict[int, Counter[int]] = {item: Counter() for item in EDGES}
    for walk in walks:
        for here, there in pairwise(walk):
            hops[here][there] += 1
    for item, row in EDGES.items():
        observed = [hops[item][n] for n in row]
        assert sum(observed) == sum(hops[item].values())  # never a hop along a missing edge
        total = sum(row.values())
        expected = [sum(observed) * c / total for c in row.values()]
        assert chisquare(observed, expected).pvalue > 0.01, (item, observed, expected)


def test_walks_stop_at_items_without_out_edges() -> None:
    graph = _graph()
    sink = int(np.searchsorted(graph.items, 5))
    walks = WalkSampler(graph).sample(2_000, 6, seed=3)
    for walk in walks:
        live = walk[walk >= 0]
        assert (walk[len(live) :] == -1).all()
        assert sink not in live[:-1]
        if len(live) < 6:
            assert live[-1] == sink


def test_walks_from_given_starts_start_there_and_follow_the_counts() -> None:
    graph = _graph()
    starts = np.searchsorted(graph.items, [1] * 20_000 + [3, 5]).astype(np.int32)
    walks = WalkSampler(graph).sample_from(starts, 4, seed=5)
    items = _as_items(graph, walks)
    assert [walk[0] for walk in items] == [1] * 20_000 + [3, 5]
    assert items[-1] == [5]  # an item without out-edges: a walk of one item
    assert all(b in EDGES[a] for walk in items for a, b in pairwise(walk))
    second = Counter(walk[1] for walk in items[:20_000])
    _, p_value = chisquare([second[n] for n in (2, 3, 4)], [6_000, 2_000, 12_000])
    assert p_value > 1e-3
    assert np.array_equal(walks, WalkSampler(graph).sample_from(starts, 4, seed=5))


def test_same_seed_same_walks_whatever_the_thread_count() -> None:
    sampler = WalkSampler(_graph())
    one = sampler.sample(50_000, 5, seed=9, threads=1)
    two = sampler.sample(50_000, 5, seed=9, threads=2)
    assert np.array_equal(one, two)
    assert not np.array_equal(one, sampler.sample(50_000, 5, seed=10))


def test_node2vec_bias_matches_the_second_order_distribution() -> None:
    graph = _graph()
    p, q = 0.5, 4.0
    walks = _as_items(graph, WalkSampler(graph, p=p, q=q).sample(60_000, 3, seed=4))
    # From 1 -> 4, the next hop from 4 is biased by its relation to 1:
    # back to 1 (return, 1/p), to 2 (1 -> 2 is an edge, 1), to 5 (not a neighbour of 1, 1/q).
    seen = Counter(walk[2] for walk in walks if walk[:2] == [1, 4] and len(walk) == 3)
    unnormalised = {1: 8 / p, 2: 2 * 1.0, 5: 10 / q}
    total = sum(unnormalised.values())
    observed = [seen[item] for item in unnormalised]
    expected = [sum(observed) * v / total for v in unnormalised.values()]
    assert sum(observed) > 3_000
    assert chisquare(observed, expected).pvalue > 0.01


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        WalkSampler(_graph(), p=0)
    empty = np.empty(0, dtype=np.int64)
    with pytest.raises(ValueError, match="no transitions"):
        WalkSampler(TransitionGraph.from_pairs(empty, empty))
    with pytest.raises(ValueError, match="length"):
        WalkSampler(_graph()).sample(10, 0, seed=0)


def test_a_weight_over_32_half_lives_below_the_heaviest_is_never_drawn() -> None:
    graph = TransitionGraph.from_pairs(
        np.array([1, 1, 2], dtype=np.int64),
        np.array([2, 3, 1], dtype=np.int64),
        np.array([1.0, 2.0**-34, 0.5]),
    )
    walks = _as_items(graph, WalkSampler(graph).sample_from(np.zeros(5_000, np.int32), 2, 4))
    assert {walk[1] for walk in walks} == {2}
