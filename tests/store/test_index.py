"""The in-process search of one version: index and exact scan agree with brute force.

A graph is searched only on an index of at least `EXACT_BELOW` rows, so the tests of the graph
search use versions of `GRAPH_SIZE` items.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.errors import StoreError
from streaming.store.index import (
    EXACT_BELOW,
    BuiltIndex,
    ItemIndex,
    Neighbours,
    build_index,
    load_index,
    unit_rows,
)

DIM = 8
GRAPH_SIZE = 2 * EXACT_BELOW


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(1_000, 1_000 + n, dtype=np.int64), rng.standard_normal((n, DIM)).astype(
        np.float32
    )


def _brute(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int, skip: int | None):
    unit = unit_rows(vectors)
    scores = unit @ (query / np.linalg.norm(query))
    order = [i for i in np.argsort(-scores, kind="stable") if ids[i] != skip][:k]
    return [int(ids[i]) for i in order], [float(scores[i]) for i in order]


def _load(built: BuiltIndex, count: int) -> ItemIndex:
    return load_index(built.rows, built.graph, built.digest, DIM, count)


def _scan(ids: np.ndarray, vectors: np.ndarray) -> Neighbours:
    return Neighbours(None, ids, unit_rows(vectors))


def test_the_exact_scan_is_brute_force_by_partial_selection() -> None:
    ids, vectors = _data(500, seed=1)
    scan = _scan(ids, vectors)
    found = scan.nearest(vectors[:20], 7, ids[:20])
    for row, (item, vector) in enumerate(zip(ids[:20], vectors[:20], strict=True)):
        expected_ids, expected_scores = _brute(ids, vectors, vector, 7, int(item))
        assert [other for other, _ in found[row]] == expected_ids
        np.testing.assert_allclose([s for _, s in found[row]], expected_scores, atol=1e-6)
    # a query asked alone gets the same answer, to the last bit of every score
    assert [scan.nearest(vectors[i : i + 1], 7, ids[i : i + 1])[0] for i in range(20)] == found


def test_a_query_by_vector_excludes_nothing() -> None:
    ids, vectors = _data(50, seed=2)
    (found,) = _scan(ids, vectors).nearest(vectors[3:4], 3, None)
    assert found[0][0] == ids[3]
    assert found[0][1] == pytest.approx(1.0, abs=1e-6)


def test_the_graph_finds_what_brute_force_finds() -> None:
    ids, vectors = _data(GRAPH_SIZE, seed=3)
    built = build_index(ids, vectors, threads=1)
    searched = Neighbours(_load(built, GRAPH_SIZE), ids[:0], vectors[:0])
    found = searched.nearest(vectors[:100], 5, ids[:100])
    for row in range(100):
        expected_ids, expected_scores = _brute(ids, vectors, vectors[row], 5, int(ids[row]))
        assert [other for other, _ in found[row]] == expected_ids
        np.testing.assert_allclose([s for _, s in found[row]], expected_scores, atol=1e-5)
    assert searched.nearest(vectors[:1], 5, ids[:1]) == found[:1]  # one query alone: the same


def test_items_added_after_the_index_are_merged_in() -> None:
    ids, vectors = _data(GRAPH_SIZE + 50, seed=4)
    index = _load(build_index(ids[:GRAPH_SIZE], vectors[:GRAPH_SIZE], threads=1), GRAPH_SIZE)
    merged = Neighbours(index, ids[GRAPH_SIZE:], unit_rows(vectors[GRAPH_SIZE:]))
    assert merged.size == GRAPH_SIZE + 50
    queries = range(GRAPH_SIZE - 25, GRAPH_SIZE + 25)  # indexed and added items alike
    found = merged.nearest(vectors[queries], 6, ids[queries])
    for row, i in enumerate(queries):
        expected_ids, _ = _brute(ids, vectors, vectors[i], 6, int(ids[i]))
        assert [other for other, _ in found[row]] == expected_ids
    added = {int(item) for item in ids[GRAPH_SIZE:]}
    assert any(other in added for row in found for other, _ in row)
    assert any(other not in added for row in found for other, _ in row)


def _foreign_graph(ids: np.ndarray, vectors: np.ndarray) -> ItemIndex:
    """An index of `vectors` whose graph was built from other vectors: a search of the graph
    answers wrongly, an exact scan of the rows answers right."""
    other = np.random.default_rng(99).standard_normal(vectors.shape).astype(np.float32)
    graph = _load(build_index(ids, other, threads=1), len(ids)).graph
    return ItemIndex(graph, ids, unit_rows(vectors))


def test_an_index_below_the_threshold_is_scanned_exactly_whatever_its_graph() -> None:
    """Recall 1.0 below `EXACT_BELOW`: the rows are scanned, the graph is never asked."""
    ids, vectors = _data(EXACT_BELOW + 9, seed=9)
    small, cold = slice(0, EXACT_BELOW - 1), slice(EXACT_BELOW - 1, None)
    searched = Neighbours(
        _foreign_graph(ids[small], vectors[small]), ids[cold], unit_rows(vectors[cold])
    )
    found = searched.nearest(vectors, 10, ids)
    for row, (item, vector) in enumerate(zip(ids, vectors, strict=True)):
        expected_ids, expected_scores = _brute(ids, vectors, vector, 10, int(item))
        assert [other for other, _ in found[row]] == expected_ids
        np.testing.assert_allclose([s for _, s in found[row]], expected_scores, atol=1e-6)


def test_an_index_at_the_threshold_is_searched_through_its_graph() -> None:
    """The same foreign graph at `EXACT_BELOW` rows is searched: most answers are wrong."""
    ids, vectors = _data(EXACT_BELOW, seed=9)
    found = Neighbours(_foreign_graph(ids, vectors), ids[:0], vectors[:0]).nearest(vectors, 10, ids)
    right = sum(
        [other for other, _ in row] == _brute(ids, vectors, vector, 10, int(item))[0]
        for row, item, vector in zip(found, ids, vectors, strict=True)
    )
    assert right < len(ids) // 2


def test_a_small_index_of_fewer_items_than_asked() -> None:
    ids, vectors = _data(3, seed=5)
    searched = Neighbours(_load(build_index(ids, vectors, threads=1), 3), ids[:0], vectors[:0])
    assert [len(row) for row in searched.nearest(vectors, 10, ids)] == [2, 2, 2]
    assert [len(row) for row in searched.nearest(vectors, 10, None)] == [3, 3, 3]


def test_small_versions_and_degenerate_queries() -> None:
    ids, vectors = _data(3, seed=5)
    scan = _scan(ids, vectors)
    assert [len(row) for row in scan.nearest(vectors, 10, ids)] == [2, 2, 2]
    assert scan.nearest(vectors, 0, ids) == [[], [], []]
    assert _scan(ids[:0], vectors[:0]).nearest(vectors[:1], 3, None) == [[]]
    (zero,) = scan.nearest(np.zeros((1, DIM), np.float32), 3, None)
    assert [score for _, score in zero] == [0.0, 0.0, 0.0]


def test_scores_are_exact_cosines_though_the_graph_holds_int8() -> None:
    """Candidates come from the quantized graph; every returned score is the float32 cosine."""
    ids, vectors = _data(GRAPH_SIZE, seed=7)
    built = build_index(ids, vectors, threads=1)
    searched = Neighbours(_load(built, GRAPH_SIZE), ids[:0], vectors[:0])
    unit = unit_rows(vectors)
    for query, row in enumerate(searched.nearest(vectors[:50], 10, None)):
        assert len(row) == 10
        for item, score in row:
            assert score == pytest.approx(float(unit[item - 1_000] @ unit[query]), abs=1e-6)


def test_the_index_keeps_the_given_ids_and_refuses_a_count_mismatch() -> None:
    ids, vectors = _data(20, seed=8)
    shuffled = ids[::-1].copy()
    index = _load(build_index(shuffled, vectors, threads=1), 20)
    assert index.ids.tolist() == shuffled.tolist()
    np.testing.assert_allclose(index.unit, unit_rows(vectors))
    with pytest.raises(ValueError, match="19 item ids for 20 vectors"):
        build_index(ids[:19], vectors)


_IDS, _VECTORS = _data(40, seed=6)
_BUILT = build_index(_IDS, _VECTORS, threads=1)


@given(
    st.sampled_from(["rows", "graph"]),
    st.binary(max_size=4_096) | st.integers(0, len(_BUILT.graph)).map(lambda n: _BUILT.graph[:n]),
)
def test_only_the_blobs_the_publisher_stored_are_parsed(which: str, blob: bytes) -> None:
    """Arbitrary or truncated bytes in either string under the stored digest are refused
    before parsing."""
    rows, graph = (blob, _BUILT.graph) if which == "rows" else (_BUILT.rows, blob)
    if (rows, graph) == (_BUILT.rows, _BUILT.graph):
        assert len(load_index(rows, graph, _BUILT.digest, DIM, 40).ids) == 40
    else:
        with pytest.raises(StoreError, match="digest"):
            load_index(rows, graph, _BUILT.digest, DIM, 40)


def test_an_index_of_another_shape_is_refused() -> None:
    with pytest.raises(StoreError, match="does not hold"):
        load_index(_BUILT.rows, _BUILT.graph, _BUILT.digest, DIM, 41)
    with pytest.raises(StoreError, match="does not hold"):
        load_index(_BUILT.rows, _BUILT.graph, _BUILT.digest, DIM + 1, 40)
