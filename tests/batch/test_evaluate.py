import math

import numpy as np
import pytest

from batch.evaluate import (
    community_precision,
    community_shares,
    popularity_scores,
    rank_scores,
    recent_before,
    temporal_holdout,
    user_rank_scores,
)
from streaming.embeddings.graph import Sequences
from streaming.embeddings.users import padded, recent_items
from streaming.embeddings.vectors import Embeddings


def _sequences(rows: dict[int, list[int]]) -> Sequences:
    users = np.array(list(rows), dtype=np.int64)
    items = np.array([item for row in rows.values() for item in row], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum([len(row) for row in rows.values()])]).astype(np.int64)
    return Sequences(users, indptr, items, np.arange(len(items), dtype=np.int64))


def _at_angles(angles: dict[int, float]) -> Embeddings:
    ids = np.array(sorted(angles), dtype=np.int64)
    radians = np.deg2rad([angles[i] for i in ids.tolist()])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    return Embeddings(ids, vectors, np.zeros(len(ids), dtype=bool))


SEQUENCES = {
    1: [1, 2, 3, 4, 5],  # 5 items: last 1 held out -> case (4 -> 5)
    2: [1, 2],  # too short: all training
    3: [7, 8, 9],  # 3 items: at least one held out -> case (8 -> 9)
    4: [1, 2, 3, 4, 6, 6, 3, 2, 1, 5],  # 10 items: last 2 held out -> (2 -> 1), (1 -> 5)
    5: [3, 4, 6, 6],  # last item repeats the previous one: no case
}


def test_holdout_takes_the_last_fifth_of_each_long_enough_sequence() -> None:
    holdout = temporal_holdout(_sequences(SEQUENCES))
    assert list(zip(holdout.queries.tolist(), holdout.answers.tolist(), strict=True)) == [
        (4, 5),
        (8, 9),
        (2, 1),
        (1, 5),
    ]
    assert holdout.train.as_lists() == [
        [1, 2, 3, 4],
        [1, 2],
        [7, 8],
        [1, 2, 3, 4, 6, 6, 3, 2],
        [3, 4, 6],
    ]
    items = holdout.sequences.items
    assert items[holdout.at].tolist() == holdout.answers.tolist()
    assert items[holdout.at - 1].tolist() == holdout.queries.tolist()


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_recent_before_is_recent_items_of_every_prefix(limit: int) -> None:
    sequences = _sequences({**SEQUENCES, 6: [6, 6, 6], 7: [5, 6, 6, 5, 5, 2]})
    rows, ends, expected = [], [], []
    for row in range(len(sequences)):
        start, stop = sequences.indptr[row], sequences.indptr[row + 1]
        for end in range(start, stop + 1):
            rows.append(row)
            ends.append(end)
            expected.append(recent_items(sequences.items[start:end].tolist(), limit))
    matrix = recent_before(sequences, np.array(rows), np.array(ends), limit)
    assert matrix.tolist() == padded(expected, limit).tolist()


def test_rank_scores_on_a_hand_made_case() -> None:
    # From item 4 (0 deg): 3 at 10 deg, 5 at 30, 1 at 90, 2 at 180 -> 5 is ranked 2nd.
    # From item 8: no vector -> a miss. From 2 (180 deg): 1 at 90 is ranked 1st of the rest
    # (5 at 30 and 3 at 10 are further). From 1 (90 deg): 5 at 30 is 1st (3 at 10 is 2nd).
    embeddings = _at_angles({1: 90, 2: 180, 3: 10, 4: 0, 5: 30})
    queries = np.array([4, 8, 2, 1], dtype=np.int64)
    answers = np.array([5, 9, 1, 5], dtype=np.int64)
    scores = rank_scores(embeddings, queries, answers, k=10)
    assert scores.cases == 4
    assert scores.answerable == 3
    assert scores.hit_rate == pytest.approx(3 / 4)
    assert scores.ndcg == pytest.approx((1 / math.log2(3) + 1 + 1) / 4)
    at_one = rank_scores(embeddings, queries, answers, k=1)
    assert at_one.hit_rate == pytest.approx(2 / 4)
    assert at_one.ndcg == pytest.approx(2 / 4)


def test_user_vectors_rank_the_items_a_user_has_not_rated_on_a_hand_made_case() -> None:
    holdout = temporal_holdout(
        _sequences(
            {
                1: [1, 2, 3, 4, 5],  # case 4 -> 5, recent items before it (limit 2): [3, 4]
                3: [11, 12, 13],  # case 12 -> 13: 11 and 12 have no vector, nor has the user
                4: [1, 2, 3, 4, 6, 6, 3, 2, 1, 5],  # cases 2 -> 1 and 1 -> 5 (recent [2, 1])
            }
        )
    )
    assert holdout.answers.tolist() == [5, 13, 1, 5]
    embeddings = _at_angles({1: 25, 2: 28, 3: 90, 4: 0, 5: 60, 6: 30, 7: -20, 8: 180})
    # decay 0.5, limit 2. User 1: (0.5 * v3 + v4) / 1.5 points at 26.6 deg; 1 and 2 are
    # nearer but rated before, so 6 (30) is 1st and 5 (60) 2nd, before 7 (-20) and 8.
    # User 4, case 2 -> 1: 1 was rated before, a miss. Case 1 -> 5: (0.5 * v2 + v1) / 1.5
    # at 26 deg, and 1, 2, 3, 4, 6 rated before: 5 is 1st, before 7 and 8.
    scores = user_rank_scores(embeddings, holdout, limit=2, decay=0.5, k=10)
    assert (scores.cases, scores.answerable) == (4, 3)
    assert scores.hit_rate == pytest.approx(2 / 4)
    assert scores.ndcg == pytest.approx((1 / math.log2(3) + 1) / 4)
    at_one = user_rank_scores(embeddings, holdout, limit=2, decay=0.5, k=1)
    assert (at_one.hit_rate, at_one.ndcg) == (pytest.approx(1 / 4), pytest.approx(1 / 4))
    # limit 1: user 1's vector is v4 (0 deg): 7 (-20), 6 (30), then 5 (60) 3rd;
    # user 4's is v1 (25 deg): 5 still 1st
    last_only = user_rank_scores(embeddings, holdout, limit=1, decay=0.5, k=10)
    assert last_only.ndcg == pytest.approx((1 / math.log2(4) + 1) / 4)
    assert last_only.hit_rate == pytest.approx(2 / 4)


def test_popularity_recommends_the_most_rated_other_items() -> None:
    train = _sequences({1: [1, 1, 1, 2, 2, 3], 2: [1, 2]})
    queries = np.array([1, 2, 4], dtype=np.int64)
    answers = np.array([2, 3, 1], dtype=np.int64)
    scores = popularity_scores(train, queries, answers, k=2)
    # query 1 -> shows [2, 3]: hit at 1; query 2 -> [1, 3]: hit at 2; query 4 -> [1, 2]: hit at 1
    assert scores.hit_rate == pytest.approx(1.0)
    assert scores.ndcg == pytest.approx((1 + 1 / math.log2(3) + 1) / 3)


def test_community_precision_counts_same_community_neighbours() -> None:
    embeddings = _at_angles({1: 0, 2: 4, 3: 10, 4: 180, 5: 184, 6: 190})
    communities = {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 1}
    # k=1: 1->2 same, 2->1 same, 3->2 differs, 4->5, 5->4, 6->5 same
    assert community_precision(embeddings, communities, k=1) == pytest.approx(5 / 6)
    ids, shares = community_shares(embeddings, communities, k=1)
    assert dict(zip(ids.tolist(), shares.tolist(), strict=True)) == {
        1: 1.0, 2: 1.0, 3: 0.0, 4: 1.0, 5: 1.0, 6: 1.0
    }  # fmt: skip
    assert len(community_shares(embeddings, {1: 0}, k=1)[0]) == 0  # too few known items
