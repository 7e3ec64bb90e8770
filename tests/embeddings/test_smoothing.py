"""Graph smoothing of published vectors: exact on hand-made graphs; the same in batch and in
the trainer's cycles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from streaming.config import TrainingSettings, WalkSettings
from streaming.embeddings.graph import TransitionGraph, transition_graph, user_sequences
from streaming.embeddings.pipeline import embed_sequences
from streaming.embeddings.smoothing import smooth
from streaming.embeddings.vectors import Embeddings


def _graph(edges: dict[tuple[int, int], float]) -> TransitionGraph:
    src, dst = zip(*edges, strict=True)
    return TransitionGraph.from_pairs(
        np.array(src, dtype=np.int64),
        np.array(dst, dtype=np.int64),
        np.array(list(edges.values()), dtype=np.float64),
    )


def _embeddings(vectors: dict[int, list[float]], cold: tuple[int, ...] = ()) -> Embeddings:
    ids = list(vectors)
    return Embeddings(
        np.array(ids, dtype=np.int64),
        np.array([vectors[i] for i in ids], dtype=np.float32),
        np.array([i in cold for i in ids]),
    )


def _unit(vector: list[float]) -> np.ndarray:
    array = np.array(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


def test_each_direction_leans_towards_its_weighted_in_and_out_neighbours() -> None:
    # 1 -> 2 (weight 3) and 3 -> 1 (weight 1): item 1's neighbours weigh 2: 3, 3: 1.
    # Item 4 is in no transition and 9 (a neighbour of 3) has no vector: neither counts.
    graph = _graph({(1, 2): 3.0, (3, 1): 1.0, (3, 9): 5.0})
    embeddings = _embeddings(
        {3: [0.0, 5.0], 1: [2.0, 0.0], 2: [0.0, 1.0], 4: [3.0, 4.0]}, cold=(2,)
    )
    smoothed = smooth(embeddings, graph, 0.25)
    got = dict(zip(smoothed.item_ids.tolist(), smoothed.vectors.tolist(), strict=True))
    # 1: 0.75 * (1, 0) + 0.25 * unit(3 * (0, 1) + 1 * (0, 1)) = (0.75, 0.25), then unit length
    np.testing.assert_allclose(got[1], _unit([0.75, 0.25]), rtol=1e-6)
    # 2's only neighbour is 1 (weight 3): 0.75 * (0, 1) + 0.25 * (1, 0)
    np.testing.assert_allclose(got[2], _unit([0.25, 0.75]), rtol=1e-6)
    # 3's neighbours with a vector: 1 only (9 has none)
    np.testing.assert_allclose(got[3], _unit([0.25, 0.75]), rtol=1e-6)
    np.testing.assert_allclose(got[4], [0.6, 0.8], rtol=1e-6)  # no neighbour: its direction
    assert smoothed.item_ids.tolist() == [3, 1, 2, 4]  # the order and the cold flags kept
    assert smoothed.cold.tolist() == [False, False, True, False]


def test_a_share_of_one_publishes_the_neighbours_direction_and_zero_changes_nothing() -> None:
    graph = _graph({(1, 2): 1.0, (2, 3): 1.0})
    embeddings = _embeddings({1: [1.0, 0.0], 2: [0.0, 2.0], 3: [1.0, 1.0]})
    assert smooth(embeddings, graph, 0.0) is embeddings
    assert smooth(embeddings, None, 0.5) is embeddings  # no graph: nothing to lean towards
    leaning = smooth(embeddings, graph, 1.0)
    full = dict(zip(leaning.item_ids.tolist(), leaning.vectors.tolist(), strict=True))
    np.testing.assert_allclose(full[1], [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(full[2], _unit([1.0 + 0.5**0.5, 0.5**0.5]), rtol=1e-6)
    with pytest.raises(ValueError, match="not within"):
        smooth(embeddings, graph, 1.5)


@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 12), st.floats(0.01, 100)),
        min_size=1,
        max_size=40,
    ),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_smoothed_vectors_have_unit_length_and_items_without_neighbours_keep_theirs(
    edges: list[tuple[int, int, float]], share: float, seed: int
) -> None:
    pairs = {(a, b): w for a, b, w in edges if a != b}
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 16, 10))
    embeddings = Embeddings(
        ids, rng.normal(size=(len(ids), 3)).astype(np.float32), np.zeros(len(ids), dtype=bool)
    )
    assume(pairs)
    smoothed = smooth(embeddings, _graph(pairs), share)
    if share == 0:
        assert smoothed is embeddings
        return
    np.testing.assert_allclose(np.linalg.norm(smoothed.vectors, axis=1), 1.0, rtol=1e-5)
    present = set(ids.tolist())
    linked = {a for a, b in pairs if b in present} | {b for a, b in pairs if a in present}
    for k, item in enumerate(ids.tolist()):
        if item not in linked:
            np.testing.assert_allclose(
                smoothed.vectors[k], _unit(embeddings.vectors[k].tolist()), rtol=1e-5
            )


def test_batch_publishes_its_vectors_smoothed_over_its_decayed_graph() -> None:
    rng = np.random.default_rng(6)
    users = np.repeat(np.arange(30), 8)
    sequences = user_sequences(
        users, rng.integers(0, 25, len(users)), np.full(len(users), 5.0),
        rng.integers(0, 100, len(users)), high_rating=3.5,
    )  # fmt: skip
    walks = WalkSettings(n_walks=200, length=6, half_life_s=5.0)
    plain = TrainingSettings(seed=3, workers=1, epochs=2, smoothing=0)
    smoothing = plain.model_copy(update={"smoothing": 0.4})
    raw = embed_sequences(sequences, plain, walks, report=lambda _: None).embeddings
    smoothed = embed_sequences(sequences, smoothing, walks, report=lambda _: None).embeddings
    expected = smooth(raw, transition_graph(sequences, walks.half_life_s), 0.4)
    np.testing.assert_array_equal(smoothed.item_ids, expected.item_ids)
    np.testing.assert_allclose(smoothed.vectors, expected.vectors, rtol=1e-6)
    assert not np.allclose(smoothed.vectors, raw.vectors, atol=1e-3)
