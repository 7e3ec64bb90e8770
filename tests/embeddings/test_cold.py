"""Cold items of a transition graph get the average of their neighbours' vectors."""

import numpy as np

from streaming.core.neighbours import neighbour_average
from streaming.embeddings.cold import fill_cold
from streaming.embeddings.graph import TransitionGraph


def _graph(edges: dict[tuple[int, int], int]) -> TransitionGraph:
    src, dst = zip(*edges, strict=True)
    return TransitionGraph.from_pairs(
        np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(list(edges.values()))
    )


def test_cold_items_get_the_count_weighted_average_of_in_and_out_neighbours() -> None:
    # 9 is cold: out-edge 9->1 (count 3), in-edges 2->9 (1) and 1->9 (1): weights 1:4, 2:1.
    graph = _graph({(1, 2): 5, (9, 1): 3, (2, 9): 1, (1, 9): 1})
    trained_ids = np.array([1, 2], dtype=np.int64)
    trained = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    embeddings = fill_cold(graph, trained_ids, trained)
    assert embeddings.item_ids.tolist() == [1, 2, 9]
    assert embeddings.cold.tolist() == [False, False, True]
    np.testing.assert_allclose(embeddings.vectors[2], [0.8, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(embeddings.vectors[:2], trained)


def test_cold_fill_propagates_through_cold_neighbours_and_reports_unreachable_items() -> None:
    # 7 only touches 9 (cold): it gets 9's average in a second round. 5->6 touch no trained item.
    graph = _graph({(1, 9): 1, (2, 9): 1, (9, 7): 2, (5, 6): 1})
    trained = np.array([[2.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    embeddings = fill_cold(graph, np.array([1, 2], dtype=np.int64), trained)
    vectors = embeddings.as_dict()
    np.testing.assert_allclose(vectors[9], [1.0, 1.0])
    np.testing.assert_allclose(vectors[7], [1.0, 1.0])
    assert 5 not in vectors
    assert 6 not in vectors
    assert embeddings.cold.sum() == 2


def test_batch_cold_fill_equals_the_streaming_neighbour_average() -> None:
    rng = np.random.default_rng(3)
    src = rng.integers(0, 60, 400)
    dst = rng.integers(0, 60, 400)
    keep = src != dst
    graph = TransitionGraph.from_pairs(src[keep], dst[keep])
    trained_ids = np.unique(rng.choice(graph.items, 35, replace=False))
    trained = rng.normal(size=(len(trained_ids), 4)).astype(np.float32)
    known = dict(zip(trained_ids.tolist(), trained, strict=True))
    batch = fill_cold(graph, trained_ids, trained).as_dict()
    edges = graph.to_dict()
    checked = 0
    for item in set(graph.items.tolist()) - set(known):
        counts: dict[int, float] = {}
        for (a, b), count in edges.items():
            if a == item:
                counts[b] = counts.get(b, 0) + count
            if b == item:
                counts[a] = counts.get(a, 0) + count
        expected = neighbour_average(counts, known)
        if expected is not None:  # first-round items: exactly the per-key average
            np.testing.assert_allclose(batch[item], expected, rtol=1e-5)
            checked += 1
    assert checked > 10
