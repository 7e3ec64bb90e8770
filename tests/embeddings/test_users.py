"""User vectors: the recency-weighted average of one version's directions of a user's items."""

import numpy as np
import pytest

from streaming.embeddings.users import (
    NO_ITEM,
    ItemDirections,
    padded,
    recency_weights,
    recent_items,
    user_vectors,
)
from streaming.embeddings.vectors import Embeddings


def _embeddings(vectors: dict[int, list[float]]) -> Embeddings:
    ids = np.array(list(vectors), dtype=np.int64)
    return Embeddings(
        ids, np.array(list(vectors.values()), dtype=np.float32), np.zeros(len(ids), dtype=bool)
    )


def test_recent_items_drop_a_repeat_of_the_item_before_and_keep_the_last_ones() -> None:
    assert recent_items([5, 5, 7, 5, 9, 9], 3) == [7, 5, 9]
    assert recent_items([5, 5, 7, 5, 9, 9], 10) == [5, 7, 5, 9]
    assert recent_items([], 3) == []
    assert recent_items([1, 2], 0) == []


def test_recency_weights_put_the_newest_item_last_with_weight_one() -> None:
    np.testing.assert_allclose(recency_weights(3, 0.5), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(recency_weights(2, 1.0), [1.0, 1.0])


def test_padded_rows_are_right_aligned() -> None:
    assert padded([[1, 2], [], [3, 4, 5]], 3).tolist() == [
        [NO_ITEM, 1, 2],
        [NO_ITEM, NO_ITEM, NO_ITEM],
        [3, 4, 5],
    ]
    with pytest.raises(ValueError, match="more than 2"):
        padded([[1, 2, 3]], 2)


def test_a_user_vector_is_the_recency_weighted_average_of_the_named_items_directions() -> None:
    embeddings = _embeddings({10: [1.0, 0.0], 20: [0.0, 2.0], 30: [3.0, 3.0]})
    # directions: 10 (1, 0), 20 (0, 1), 30 (h, h) with h = 1/sqrt(2)
    # user 0: 10 (weight 0.25), 20 (0.5), 30 (1): (0.25 + h, 0.5 + h) / 1.75
    # user 1: 99 unknown, 20 (weight 1): 20's direction exactly
    # user 2: nothing the version knows: no vector
    recent = padded([[10, 20, 30], [99, 20], [98]], 3)
    vectors, has = user_vectors(recent, ItemDirections.of(embeddings), decay=0.5)
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(vectors[0], [(0.25 + h) / 1.75, (0.5 + h) / 1.75], rtol=1e-6)
    np.testing.assert_allclose(vectors[1], [0.0, 1.0])
    assert has.tolist() == [True, True, False]
    assert not vectors[2].any()


def test_a_long_item_vector_weighs_in_a_user_vector_as_its_recency_weight_says() -> None:
    # 10 was trained on far more contexts (a long vector): averaged raw it would outweigh 20
    embeddings = _embeddings({10: [40.0, 0.0], 20: [0.0, 0.5]})
    vectors, _ = user_vectors(padded([[10, 20]], 2), ItemDirections.of(embeddings), decay=1.0)
    np.testing.assert_allclose(vectors[0], [0.5, 0.5])


@pytest.mark.parametrize("offset", [0, 10**12])  # a lookup table, a binary search
def test_user_vectors_agree_with_a_per_user_loop_across_chunks(offset: int) -> None:
    rng = np.random.default_rng(3)
    ids = rng.choice(10_000, size=500, replace=False).astype(np.int64) + offset
    embeddings = Embeddings(
        ids, rng.normal(size=(500, 8)).astype(np.float32), np.zeros(500, dtype=bool)
    )
    rows = [
        rng.choice(np.r_[ids, [offset + 10_001, 10**13]], size=rng.integers(0, 6)).tolist()
        for _ in range(70_000)
    ]
    vectors, has = user_vectors(padded(rows, 5), ItemDirections.of(embeddings), decay=0.7)
    lookup = {item: v / np.linalg.norm(v) for item, v in embeddings.as_dict().items()}
    for user in rng.choice(len(rows), size=300, replace=False):
        weights = recency_weights(len(rows[user]), 0.7)
        known = [(w, lookup[i]) for w, i in zip(weights, rows[user], strict=True) if i in lookup]
        assert has[user] == bool(known)
        if known:
            expected = sum(w * v for w, v in known) / sum(w for w, _ in known)
            np.testing.assert_allclose(vectors[user], expected, rtol=1e-5, atol=1e-6)
