import numpy as np

from streaming.embeddings.graph import TransitionGraph, transition_graph, user_sequences


def _columns(rows: list[tuple[int, int, float, int]]) -> tuple[np.ndarray, ...]:
    users, items, ratings, times = zip(*rows, strict=True)
    return (
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(ratings, dtype=np.float64),
        np.array(times, dtype=np.int64),
    )


ROWS = [
    # user, item, rating, time: out of order, a tie at t=100, a low rating, a duplicate
    (2, 50, 4.0, 300),
    (1, 30, 5.0, 100),
    (1, 20, 4.0, 100),
    (1, 10, 3.5, 50),
    (1, 99, 3.0, 75),
    (1, 20, 4.0, 100),
    (2, 40, 4.5, 200),
    (2, 40, 5.0, 400),
    (2, 60, 4.0, 500),
    (3, 70, 4.0, 1),
]


def test_sequences_keep_high_ratings_in_time_then_item_order() -> None:
    sequences = user_sequences(*_columns(ROWS), high_rating=3.5)
    assert sequences.users.tolist() == [1, 2, 3]
    assert sequences.as_lists() == [[10, 20, 30], [40, 50, 40, 60], [70]]
    assert sequences.lengths.tolist() == [3, 4, 1]
    assert sequences.items_of(1).tolist() == [40, 50, 40, 60]
    assert sequences.times.tolist() == [50, 100, 100, 200, 300, 400, 500, 1]


def test_transitions_are_counted_per_consecutive_pair() -> None:
    graph = transition_graph(
        user_sequences(*_columns([*ROWS, (4, 10, 5.0, 1), (4, 20, 5.0, 2)]), 3.5)
    )
    assert graph.to_dict() == {
        (10, 20): 2,
        (20, 30): 1,
        (40, 50): 1,
        (50, 40): 1,
        (40, 60): 1,
    }
    assert graph.items.tolist() == [10, 20, 30, 40, 50, 60]  # 70 is in no transition
    assert dict(zip(graph.items.tolist(), graph.weights.tolist(), strict=True)) == {
        10: 2, 20: 1, 30: 0, 40: 2, 50: 1, 60: 0,
    }  # fmt: skip


def test_self_repeats_give_no_transition() -> None:
    rows = [(1, 5, 4.0, 1), (1, 5, 4.0, 2), (1, 6, 4.0, 3)]
    assert transition_graph(user_sequences(*_columns(rows), 3.5)).to_dict() == {(5, 6): 1}


def test_from_pairs_sums_counts_and_reverse_swaps_edges() -> None:
    src = np.array([3, 1, 3, 1], dtype=np.int64)
    dst = np.array([1, 2, 1, 3], dtype=np.int64)
    graph = TransitionGraph.from_pairs(src, dst, np.array([2, 1, 5, 1], dtype=np.int64))
    assert graph.to_dict() == {(1, 2): 1, (1, 3): 1, (3, 1): 7}
    assert graph.indptr.tolist() == [0, 2, 2, 3]
    assert graph.reverse().to_dict() == {(2, 1): 1, (3, 1): 1, (1, 3): 7}


def test_empty_input_gives_an_empty_graph() -> None:
    empty = np.empty(0, dtype=np.int64)
    sequences = user_sequences(empty, empty, np.empty(0), empty, 3.5)
    assert len(sequences) == 0
    graph = transition_graph(sequences)
    assert graph.n_nodes == 0
    assert graph.n_edges == 0
