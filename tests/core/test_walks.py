"""The per-item walk logic: one hop, and walk starts."""

from __future__ import annotations

import random

import pytest

from streaming.core.neighbours import ItemNeighbours
from streaming.core.walks import Walk, WalkStarter, add_transitions, advance_walks


def _neighbours(counts: dict[int, int]) -> ItemNeighbours:
    neighbours = ItemNeighbours()
    for item, count in counts.items():
        neighbours.add(item, count)
    return neighbours


def test_walks_step_on_through_items_at_hand_and_leave_for_others() -> None:
    # 1 -> 3 -> 2 -> ... (2 is not here: it leaves for shard 2 % 4); 5 -> 7 -> 9 (no out-edges)
    graph = {1: _neighbours({3: 1}), 3: _neighbours({2: 1}), 5: _neighbours({7: 1}),
             7: _neighbours({9: 1}), 9: ItemNeighbours()}  # fmt: skip
    walks = {1: [Walk((1,), 4)] * 3, 5: [Walk((5,), 6)]}
    advanced = advance_walks(walks, graph.get, 4, 5, random.Random(0))
    assert advanced.outbound == {2: {2: [Walk((1, 3, 2), 4)] * 3}}
    assert advanced.done == [Walk((5, 7, 9), 6)]  # stopped where there is no next hop
    assert advanced.steps == 3 * 2 + 2


def test_walks_not_here_leave_grouped_by_shard_and_item() -> None:
    graph = {1: _neighbours({2: 1, 6: 1, 3: 2})}  # 2 and 6: shard 2 of 4; 3: shard 3
    advanced = advance_walks({1: [Walk((1,), 0)] * 400}, graph.get, 4, 5, random.Random(0))
    assert set(advanced.outbound) == {2, 3}
    assert set(advanced.outbound[2]) == {2, 6}
    assert set(advanced.outbound[3]) == {3}
    sent = [w for by_item in advanced.outbound.values() for b in by_item.values() for w in b]
    assert len(sent) == advanced.steps == 400
    assert all(w.path[-1] == item for by_item in advanced.outbound.values()
               for item, batch in by_item.items() for w in batch)  # fmt: skip


def test_walks_finish_at_their_length_without_leaving() -> None:
    graph = {1: _neighbours({3: 1}), 3: _neighbours({1: 1})}
    advanced = advance_walks({1: [Walk((1,), 0)]}, graph.get, 2, 4, random.Random(0))
    assert advanced.done == [Walk((1, 3, 1, 3), 0)]
    assert advanced.outbound == {}


def test_each_walk_moves_by_the_counts_of_the_item_it_stands_on() -> None:
    walks = {1: [Walk((9, 1), t) for t in range(1_000)]}
    graph = {1: _neighbours({2: 1, 3: 3})}  # 2 and 3 not here: every walk leaves after a hop
    advanced = advance_walks(walks, graph.get, 128, 5, random.Random(0))
    assert advanced.done == []
    assert advanced.steps == 1_000
    assert set(advanced.outbound) == {2, 3}
    onward = {
        nxt: batch for by_item in advanced.outbound.values() for nxt, batch in by_item.items()
    }
    assert sorted(w.newest_event_time for batch in onward.values() for w in batch) == list(
        range(1_000)
    )
    assert all(w.path == (9, 1, nxt) for nxt, batch in onward.items() for w in batch)
    assert 650 < len(onward[3]) < 850  # 750 expected: 3 of every 4 hops


def test_walks_finish_at_their_length_or_a_dead_end() -> None:
    graph = {1: _neighbours({2: 1}), 2: ItemNeighbours()}
    walks = {1: [Walk((1,), 5), Walk((4, 1), 6)]}
    advanced = advance_walks(walks, graph.get, 128, 2, random.Random(0))
    assert advanced.done == [Walk((1, 2), 5), Walk((4, 1), 6)]  # a hop; already long enough
    assert advanced.steps == 1
    advanced = advance_walks({1: [Walk((1,), 5)]}, graph.get, 128, 3, random.Random(0))
    assert advanced.done == [Walk((1, 2), 5)]  # 2 has no out-edges
    assert (advanced.outbound, advanced.steps) == ({}, 1)


def test_walks_are_seeded() -> None:
    graph = {i: _neighbours({2: 1, 3: 1, 4: 1}) for i in range(1, 5)}
    walks = {1: [Walk((1,), 0)] * 50}
    first = advance_walks(walks, graph.get, 128, 6, random.Random(4))
    assert advance_walks(walks, graph.get, 128, 6, random.Random(4)) == first
    assert len(set(first.done)) > 40


def test_starts_on_weight_gain_carry_fractions() -> None:
    starter = WalkStarter()
    starts = [starter.on_weight_gain(1, 0.3, event_time=t) for t in range(10)]
    assert starts == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]  # 3 walks for 10 x 0.3
    assert starter.newest_event_time == 9
    assert starter.on_weight_gain(1, 0.3, event_time=2) == 0  # an older event: same newest
    assert starter.newest_event_time == 9


def test_a_batch_of_transitions_counts_and_starts_walks_as_one_at_a_time_does() -> None:
    neighbours, starter = ItemNeighbours(), WalkStarter()
    batch = [(2, 10), (3, 11), (2, 12), (4, 9)]
    started, new = add_transitions(1, batch, neighbours, starter, 0.5)
    assert neighbours.weights == {2: 2, 3: 1, 4: 1}
    assert neighbours.weight == 4
    # 0.5 walks per transition: the second and fourth transitions each start one
    assert started == [Walk((1,), 11), Walk((1,), 9)]
    assert new == [2, 3, 4]
    assert starter.newest_event_time == 12
    assert add_transitions(1, [(4, 13), (5, 13), (4, 14)], neighbours, starter, 0.0) == ([], [5])


def test_refresh_starts_follow_weight_and_time() -> None:
    starter = WalkStarter()
    # 36 walks per unit of weight per hour: 0.6 per weight every minute
    assert [starter.on_refresh(5, 36.0, 60) for _ in range(4)] == [3, 3, 3, 3]
    assert sum(starter.on_refresh(1, 36.0, 60) for _ in range(10)) == 6


@pytest.mark.parametrize("rate", [0.0, 1.0, 2.5])
def test_rates_are_arguments_not_state(rate: float) -> None:
    """A restart with another rate applies it: the state holds only the carried credit."""
    starter = WalkStarter()
    assert sum(starter.on_weight_gain(1, rate, 0) for _ in range(4)) == int(4 * rate)
