import pickle
import random

import numpy as np
import pytest
from scipy.stats import chisquare

from streaming.core.neighbours import (
    NO_HOPS,
    ItemNeighbours,
    draw_hop,
    idle_items,
    leads_to,
    neighbour_average,
)

COUNTS = {11: 60, 12: 25, 13: 10, 14: 5}


def _neighbours() -> ItemNeighbours:
    state = ItemNeighbours()
    for neighbour, count in COUNTS.items():
        state.add(neighbour, count)
    return state


def _draws(state: ItemNeighbours, rng: random.Random, n: int) -> list[int]:
    hops = state.hop_table()
    assert hops is not None
    return [draw_hop(*hops, rng.random()) for _ in range(n)]


def reference_bug_step(counts: dict[int, int], rng: random.Random, n: int) -> list[int]:
    """SparrowRecSys's hop: the first neighbour whose probability is <= a uniform draw."""
    total = sum(counts.values())
    out = []
    for _ in range(n):
        u = rng.random()
        chosen = next((item for item, c in counts.items() if u >= c / total), -1)
        out.append(chosen)
    return out


def _fits(draws: list[int]) -> float:
    observed = [draws.count(item) for item in COUNTS]
    total = sum(COUNTS.values())
    expected = [len(draws) * c / total for c in COUNTS.values()]
    if sum(observed) != len(draws):
        return 0.0
    return float(chisquare(observed, expected).pvalue)


def test_leads_to_names_exactly_the_neighbours_of_a_hop_table() -> None:
    hops = _neighbours().hop_table()
    assert [item for item in range(9, 17) if leads_to(hops, item)] == [11, 12, 13, 14]
    assert not any(leads_to(NO_HOPS, item) for item in range(9, 17))


def test_add_tracks_weight_and_new_neighbours() -> None:
    state = ItemNeighbours()
    assert state.add(3) is True
    assert state.add(3, 4) is False
    assert state.add(7) is True
    assert state.weights == {3: 5, 7: 1}
    assert state.weight == 6
    with pytest.raises(ValueError, match="positive"):
        state.add(3, 0)


def test_step_follows_transition_counts() -> None:
    draws = _draws(_neighbours(), random.Random(1), 20_000)
    assert _fits(draws) > 0.01


def test_the_reference_sampling_bug_fails_the_same_check() -> None:
    draws = reference_bug_step(COUNTS, random.Random(1), 20_000)
    assert _fits(draws) < 1e-6


def test_step_is_seeded_and_sees_new_counts() -> None:
    state = _neighbours()
    first = _draws(state, random.Random(3), 100)
    assert first == _draws(_neighbours(), random.Random(3), 100)
    state.add(99, 10_000)
    assert _draws(state, random.Random(3), 100).count(99) > 90


def test_an_item_without_neighbours_has_no_hops() -> None:
    assert ItemNeighbours().hop_table() is NO_HOPS


def test_pickle_round_trip() -> None:
    state = _neighbours()
    state.hop_table()  # builds the cached table
    restored = pickle.loads(pickle.dumps(state))
    assert restored == state
    assert _draws(restored, random.Random(4), 50) == _draws(state, random.Random(4), 50)


def test_neighbour_average_is_count_weighted_over_known_vectors() -> None:
    vectors = {
        1: np.array([1.0, 0.0], dtype=np.float32),
        2: np.array([0.0, 1.0], dtype=np.float32),
    }
    average = neighbour_average({1: 3, 2: 1, 5: 100}, vectors)
    assert average is not None
    np.testing.assert_allclose(average, [0.75, 0.25])
    assert average.dtype == np.float32
    assert neighbour_average({5: 2}, vectors) is None
    assert neighbour_average({}, vectors) is None


def test_bytes_round_trip_keeps_counts_weight_and_draws() -> None:
    state = _neighbours()
    restored = ItemNeighbours.from_bytes(state.to_bytes())
    assert restored.weights == COUNTS
    assert restored.weight == sum(COUNTS.values())
    assert restored.weight_of(12) == 25
    assert restored.weight_of(99) == 0
    assert len(restored) == len(COUNTS)
    assert restored.add(12) is False
    assert restored.add(99) is True
    draws = _draws(ItemNeighbours.from_bytes(state.to_bytes()), random.Random(4), 50)
    assert draws == _draws(state, random.Random(4), 50)


def test_counts_match_a_counter_through_any_order_of_adds_and_round_trips() -> None:
    rng = random.Random(5)
    expected: dict[int, int] = {}
    state = ItemNeighbours()
    for round_trip in range(20):
        for add in range(200):
            if add == 100:  # known from here on: each add updates it
                assert state.weight == sum(expected.values())
            neighbour, count = (
                rng.randrange(-50, 2**40 if round_trip % 2 else 60),
                1 + rng.randrange(3),
            )
            assert state.add(neighbour, count) is (neighbour not in expected)
            expected[neighbour] = expected.get(neighbour, 0) + count
        state = ItemNeighbours.from_bytes(state.to_bytes())
        assert state.weights == expected
        assert state.weight == sum(expected.values())
        assert all(state.weight_of(n) == c for n, c in expected.items())
    assert state.weight_of(-51) == 0


HOUR = 3600


def _decayed(transitions: list[tuple[int, int]], half_life_s: float) -> ItemNeighbours:
    state = ItemNeighbours()
    for neighbour, event_time in transitions:
        state.add(neighbour, event_time=event_time, half_life_s=half_life_s)
    return state


def test_a_decayed_transition_weighs_half_per_half_life_before_the_newest() -> None:
    # to 1 at hours 0, 1 and 2, to 2 at hour 2; a half-life of one hour
    state = _decayed([(1, 0), (1, HOUR), (1, 2 * HOUR), (2, 2 * HOUR)], HOUR)
    assert state.reference == 0
    as_of_newest = {n: w / 4 for n, w in state.weights.items()}  # stored as of hour 0
    assert as_of_newest == {1: 0.25 + 0.5 + 1, 2: 1}
    assert state.weight_at(2 * HOUR, HOUR) == 2.75
    assert state.weight_at(3 * HOUR, HOUR) == 1.375
    assert state.weight_at(3 * HOUR, None) == state.weight == 11


def test_decayed_weights_do_not_depend_on_the_order_of_transitions() -> None:
    rng = random.Random(6)
    transitions = [(rng.randrange(20), rng.randrange(0, 400 * HOUR)) for _ in range(2_000)]
    first = _decayed(transitions, 5 * HOUR)
    rng.shuffle(transitions)
    second = _decayed(transitions, 5 * HOUR)
    newest = max(t for _, t in transitions)
    for state in (first, second):
        assert state.reference is not None
    for neighbour in range(20):
        expected = sum(2 ** ((t - newest) / (5 * HOUR)) for n, t in transitions if n == neighbour)
        for state in (first, second):
            assert state.reference is not None
            weight = state.weight_of(neighbour) * 2 ** ((state.reference - newest) / (5 * HOUR))
            assert weight == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_the_reference_moves_before_a_weight_could_overflow_and_keeps_the_ratios() -> None:
    half_life = 60.0
    span = ItemNeighbours.REFERENCE_SPAN
    late = int(3 * span * half_life)  # three spans after the first transition
    state = _decayed([(1, 0), (2, 0), (2, late), (3, late)], half_life)
    assert state.reference == late
    assert max(state.weights.values()) < 2.0**span
    assert state.weight_of(2) == pytest.approx(1 + 2.0 ** -(3 * span))
    assert state.weight_of(3) == 1
    assert state.weight_of(1) == pytest.approx(2.0 ** -(3 * span))
    restored = ItemNeighbours.from_bytes(state.to_bytes())
    assert restored == state
    assert restored.reference == late


def test_steps_follow_the_decayed_weights() -> None:
    # one old transition to 1 (four half-lives back: 1/16), two to 2 half a half-life apart
    state = _decayed([(1, 0), (2, 4 * HOUR), (2, 3 * HOUR + HOUR // 2)], HOUR)
    weights = {1: 2.0**-4, 2: 1 + 2**-0.5}
    draws = _draws(state, random.Random(7), 20_000)
    observed = [draws.count(n) for n in weights]
    total = sum(weights.values())
    expected = [len(draws) * w / total for w in weights.values()]
    assert sum(observed) == len(draws)
    assert chisquare(observed, expected).pvalue > 0.01


def test_a_decayed_transition_needs_its_event_time() -> None:
    with pytest.raises(ValueError, match="event time"):
        ItemNeighbours().add(1, half_life_s=60.0)
    with pytest.raises(ValueError, match="half-life"):
        ItemNeighbours().add(1, event_time=0, half_life_s=0.0)


def test_idle_items_are_those_idle_for_longer_than_the_ttl_before_the_time_given() -> None:
    newest = {5: 100, 3: 89, 8: 90, 1: 10}
    assert idle_items(newest, 100, 10) == [1, 3]  # 90 is exactly the TTL before: kept
    assert idle_items(newest, 1000, 10) == [1, 3, 5, 8]
    assert idle_items(newest, None, 10) == []  # no time to judge by yet
    assert idle_items({}, 100, 10) == []
