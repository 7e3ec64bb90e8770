import numpy as np
import pytest

from streaming.core.neighbours import ItemNeighbours
from streaming.core.sequences import UserSequence
from streaming.embeddings.graph import (
    TransitionGraph,
    transition_count,
    transition_graph,
    user_sequences,
)


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


def test_a_half_life_weighs_each_transition_by_its_age_as_of_the_newest() -> None:
    hour = 3600
    # user 1: 10 -> 20 (hour 1) -> 10 (hour 2); user 2: 10 -> 20 (hour 3)
    sequences = user_sequences(
        np.array([1, 1, 1, 2, 2]),
        np.array([10, 20, 10, 10, 20]),
        np.full(5, 5.0),
        np.array([0, hour, 2 * hour, 2 * hour, 3 * hour]),
        3.5,
    )
    graph = transition_graph(sequences, half_life_s=hour)
    assert graph.as_of == 3 * hour
    assert graph.to_dict() == {(10, 20): 0.25 + 1, (20, 10): 0.5}
    assert transition_graph(sequences).to_dict() == {(10, 20): 2, (20, 10): 1}
    assert transition_count(sequences) == 3


def test_the_stream_state_and_the_batch_graph_decay_alike() -> None:
    """`ItemNeighbours` fed the transitions in any order holds the batch graph's weights."""
    rng = np.random.default_rng(3)
    n = 3_000
    users = rng.integers(0, 100, n)
    items = rng.integers(0, 40, n)
    times = rng.integers(0, 30 * 86_400, n)
    sequences = user_sequences(users, items, np.full(n, 4.0), times, 3.5)
    half_life = 2 * 86_400.0
    graph = transition_graph(sequences, half_life)
    assert graph.as_of is not None
    sequence_of: dict[int, UserSequence] = {}
    for user, item, event_time in zip(users.tolist(), items.tolist(), times.tolist(), strict=True):
        sequence_of.setdefault(user, UserSequence()).add(item, event_time)
    transitions = [t for s in sequence_of.values() for t in s.advance(2**62)]
    assert len(transitions) == transition_count(sequences)
    state: dict[int, ItemNeighbours] = {}
    for i in rng.permutation(len(transitions)).tolist():
        src, dst, event_time = transitions[i]
        state.setdefault(src, ItemNeighbours()).add(
            dst, event_time=event_time, half_life_s=half_life
        )
    streamed: dict[tuple[int, int], float] = {}
    for item, neighbours in state.items():
        assert neighbours.reference is not None
        scale = 2 ** ((neighbours.reference - graph.as_of) / half_life)
        streamed |= {(item, n): w * scale for n, w in neighbours.weights.items()}
    batch = graph.to_dict()
    assert streamed.keys() == batch.keys()
    assert all(streamed[e] == pytest.approx(batch[e], rel=1e-12) for e in batch)
