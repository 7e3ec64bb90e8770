"""The in-process search of one version: index and exact scan agree with brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.errors import StoreError
from streaming.store.index import (
    BuiltIndex,
    ItemIndex,
    Neighbours,
    build_index,
    load_index,
    unit_rows,
)

DIM = 8


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
    found = _scan(ids, vectors).nearest(vectors[:20], 7, ids[:20])
    for row, (item, vector) in enumerate(zip(ids[:20], vectors[:20], strict=True)):
        expected_ids, expected_scores = _brute(ids, vectors, vector, 7, int(item))
        assert [other for other, _ in found[row]] == expected_ids
        np.testing.assert_allclose([s for _, s in found[row]], expected_scores, atol=1e-6)


def test_a_query_by_vector_excludes_nothing() -> None:
    ids, vectors = _data(50, seed=2)
    (found,) = _scan(ids, vectors).nearest(vectors[3:4], 3, None)
    assert found[0][0] == ids[3]
    assert found[0][1] == pytest.approx(1.0, abs=1e-6)


def test_the_index_finds_what_brute_force_finds_on_a_small_version() -> None:
    ids, vectors = _data(300, seed=3)
    searched = Neighbours(_load(build_index(ids, vectors, threads=1), 300), ids[:0], vectors[:0])
    found = searched.nearest(vectors[:30], 5, ids[:30])
    for row in range(30):
        expected_ids, expected_scores = _brute(ids, vectors, vectors[row], 5, int(ids[row]))
        assert [other for other, _ in found[row]] == expected_ids
        np.testing.assert_allclose([s for _, s in found[row]], expected_scores, atol=1e-5)
    assert searched.nearest(vectors[:1], 5, ids[:1]) == found[:1]  # one query alone: the same


def test_items_added_after_the_index_are_merged_in() -> None:
    ids, vectors = _data(300, seed=4)
    index = _load(build_index(ids[:250], vectors[:250], threads=1), 250)
    merged = Neighbours(index, ids[250:], unit_rows(vectors[250:]))
    assert merged.size == 300
    found = merged.nearest(vectors[240:260], 6, ids[240:260])
    for row, i in enumerate(range(240, 260)):
        expected_ids, _ = _brute(ids, vectors, vectors[i], 6, int(ids[i]))
        assert [other for other, _ in found[row]] == expected_ids


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
    ids, vectors = _data(400, seed=7)
    searched = Neighbours(_load(build_index(ids, vectors, threads=1), 400), ids[:0], vectors[:0])
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
