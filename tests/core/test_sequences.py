import pickle
from collections import Counter

import numpy as np

from streaming.core.sequences import Admission, Transition, UserSequence
from streaming.embeddings.graph import transition_graph, user_sequences


def test_orders_by_event_time_then_item_id() -> None:
    sequence = UserSequence()
    for item, when in [(30, 200), (20, 100), (10, 100), (40, 300)]:
        assert sequence.add(item, when) is Admission.ACCEPTED
    assert sequence.advance(10_000) == [
        Transition(10, 20, 100),
        Transition(20, 30, 200),
        Transition(30, 40, 300),
    ]


def test_releases_only_up_to_the_watermark() -> None:
    sequence = UserSequence()
    sequence.add(1, 100)
    sequence.add(2, 200)
    sequence.add(3, 300)
    assert sequence.next_release_time() == 100
    assert sequence.advance(199) == []
    assert sequence.next_release_time() == 200
    assert sequence.advance(200) == [(1, 2, 200)]
    sequence.add(4, 250)  # out of order, but the watermark has not passed it
    assert sequence.advance(300) == [(2, 4, 250), (4, 3, 300)]
    assert sequence.next_release_time() is None


def test_duplicates_count_once_and_late_events_change_nothing() -> None:
    sequence = UserSequence()
    assert sequence.add(1, 100) is Admission.ACCEPTED
    assert sequence.add(1, 100) is Admission.DUPLICATE
    assert sequence.add(2, 200) is Admission.ACCEPTED
    assert sequence.advance(200) == [(1, 2, 200)]
    assert sequence.add(2, 200) is Admission.DUPLICATE
    assert sequence.add(1, 200) is Admission.LATE  # same time, smaller item: sorts before
    assert sequence.add(9, 150) is Admission.LATE
    assert sequence.add(3, 201) is Admission.ACCEPTED
    assert sequence.advance(500) == [(2, 3, 201)]


def test_repeated_item_gives_no_self_transition() -> None:
    sequence = UserSequence()
    for item, when in [(1, 1), (1, 2), (2, 3), (2, 4), (1, 5)]:
        sequence.add(item, when)
    assert sequence.advance(10) == [(1, 2, 3), (2, 1, 5)]


def test_pickle_round_trip_keeps_state() -> None:
    sequence = UserSequence()
    sequence.add(5, 10)
    sequence.add(6, 20)
    sequence.advance(10)
    restored = pickle.loads(pickle.dumps(sequence))
    assert restored == sequence
    assert restored.advance(20) == sequence.advance(20) == [(5, 6, 20)]


def test_streaming_with_bounded_disorder_matches_batch() -> None:
    """Events shuffled within the out-of-orderness bound give exactly the batch counts."""
    rng = np.random.default_rng(7)
    n = 20_000
    users = rng.integers(0, 50, n)
    items = rng.integers(0, 40, n)
    times = rng.integers(0, 5_000, n)
    ratings = rng.choice([1.0, 3.0, 3.5, 4.0, 5.0], n)
    bound = 50
    arrival = np.argsort(times + rng.integers(0, bound + 1, n), kind="stable")

    states: dict[int, UserSequence] = {}
    streamed: Counter[tuple[int, int]] = Counter()
    max_time = -1
    for k in arrival:
        if ratings[k] < 3.5:
            continue
        state = states.setdefault(int(users[k]), UserSequence())
        assert state.add(int(items[k]), int(times[k])) is not Admission.LATE
        max_time = max(max_time, int(times[k]))
        for other in states.values():
            streamed.update(t[:2] for t in other.advance(max_time - bound - 1))
    for state in states.values():
        streamed.update(t[:2] for t in state.advance(10**9))

    batch = transition_graph(user_sequences(users, items, ratings, times, 3.5)).to_dict()
    assert dict(streamed) == batch
    assert sum(batch.values()) > 1_000
