"""The per-item walk logic: one hop, and walk starts."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from scipy.stats import chisquare

from streaming.core.neighbours import NO_HOPS, HopTable, ItemNeighbours, draw_hop
from streaming.core.walks import (
    StepTables,
    Walk,
    WalkStarter,
    add_transitions,
    advance_walks,
    walks_here,
)


def _here(graph: dict[int, ItemNeighbours]) -> Callable[[int], HopTable | None]:
    """Hop tables of the items in `graph`; the others are not here."""
    return lambda item: graph[item].hop_table() if item in graph else None


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
    advanced = advance_walks(walks, _here(graph), 4, 5, random.Random(0))
    assert advanced.outbound == {2: {2: [Walk((1, 3, 2), 4)] * 3}}
    assert advanced.done == [Walk((5, 7, 9), 6)]  # stopped where there is no next hop
    assert advanced.steps == 3 * 2 + 2


def test_walks_not_here_leave_grouped_by_shard_and_item() -> None:
    graph = {1: _neighbours({2: 1, 6: 1, 3: 2})}  # 2 and 6: shard 2 of 4; 3: shard 3
    advanced = advance_walks({1: [Walk((1,), 0)] * 400}, _here(graph), 4, 5, random.Random(0))
    assert set(advanced.outbound) == {2, 3}
    assert set(advanced.outbound[2]) == {2, 6}
    assert set(advanced.outbound[3]) == {3}
    sent = [w for by_item in advanced.outbound.values() for b in by_item.values() for w in b]
    assert len(sent) == advanced.steps == 400
    assert all(w.path[-1] == item for by_item in advanced.outbound.values()
               for item, batch in by_item.items() for w in batch)  # fmt: skip


def test_walks_finish_at_their_length_without_leaving() -> None:
    graph = {1: _neighbours({3: 1}), 3: _neighbours({1: 1})}
    advanced = advance_walks({1: [Walk((1,), 0)]}, _here(graph), 2, 4, random.Random(0))
    assert advanced.done == [Walk((1, 3, 1, 3), 0)]
    assert advanced.outbound == {}


def test_each_walk_moves_by_the_counts_of_the_item_it_stands_on() -> None:
    walks = {1: [Walk((9, 1), t) for t in range(1_000)]}
    graph = {1: _neighbours({2: 1, 3: 3})}  # 2 and 3 not here: every walk leaves after a hop
    advanced = advance_walks(walks, _here(graph), 128, 5, random.Random(0))
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
    advanced = advance_walks(walks, _here(graph), 128, 2, random.Random(0))
    assert advanced.done == [Walk((1, 2), 5), Walk((4, 1), 6)]  # a hop; already long enough
    assert advanced.steps == 1
    advanced = advance_walks({1: [Walk((1,), 5)]}, _here(graph), 128, 3, random.Random(0))
    assert advanced.done == [Walk((1, 2), 5)]  # 2 has no out-edges
    assert (advanced.outbound, advanced.steps) == ({}, 1)


def test_a_first_order_hop_is_draw_hops_draw() -> None:
    graph = {
        i: _neighbours({j: 1 + (i * j) % 7 for j in range(1, 9) if j != i}) for i in range(1, 9)
    }
    walks = {1: [Walk((1,), t) for t in range(200)]}
    advanced = advance_walks(walks, _here(graph), 1, 8, random.Random(5))
    rng = random.Random(5)
    expected = []
    for t in range(200):
        path = [1]
        while len(path) < 8:
            path.append(draw_hop(*graph[path[-1]].hop_table(), rng.random()))
        expected.append(Walk(tuple(path), t))
    assert advanced.done == expected


def test_walks_are_seeded() -> None:
    graph = {i: _neighbours({2: 1, 3: 1, 4: 1}) for i in range(1, 5)}
    walks = {1: [Walk((1,), 0)] * 50}
    first = advance_walks(walks, _here(graph), 128, 6, random.Random(4))
    assert advance_walks(walks, _here(graph), 128, 6, random.Random(4)) == first
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


@pytest.mark.parametrize("tasks", [1, 2, 3, 8])
def test_every_walk_of_a_record_goes_to_one_task_and_the_tasks_share_evenly(tasks: int) -> None:
    rng = random.Random(tasks)
    for _ in range(200):
        starts = [
            (rng.randrange(50), rng.randrange(10**6), rng.choice([1, 1, 1, 2, 5]))
            for _ in range(rng.randrange(1, 40))
        ]
        shares = [walks_here(starts, task, tasks) for task in range(tasks)]
        split: Counter[tuple[int, int]] = Counter()
        for share in shares:
            for item, event_time, count in share:
                assert count > 0
                split[item, event_time] += count
        expected: Counter[tuple[int, int]] = Counter()
        for item, event_time, count in starts:
            expected[item, event_time] += count
        assert split == expected
        totals = [sum(count for *_, count in share) for share in shares]
        assert max(totals) - min(totals) <= 1


def test_single_walks_of_one_item_in_records_of_other_times_go_to_every_task() -> None:
    """An item's walks do not all land on one task: the split follows the record."""
    tasks = {task for t in range(20) for task in range(3) if walks_here([(7, t, 1)], task, 3)}
    assert tasks == {0, 1, 2}
    # the first walk is number (7 + 0) % 3 = 1: task 1's; the next ones go round
    assert walks_here([(7, 0, 1), (9, 0, 1), (4, 0, 1)], 1, 3) == [(7, 0, 1)]
    assert walks_here([(7, 0, 1), (9, 0, 1), (4, 0, 1)], 0, 3) == [(4, 0, 1)]


@pytest.mark.parametrize("half_life", [None, 50.0])
def test_step_tables_equal_the_item_stage_counts_bit_for_bit(half_life: float | None) -> None:
    rng = random.Random(7)
    owned: dict[int, ItemNeighbours] = {}
    tables = StepTables(half_life)
    for _ in range(200):  # batches, as the item stage counts them
        batch: dict[int, list[tuple[int, int]]] = {}
        for _ in range(rng.randrange(1, 20)):
            src, dst = rng.randrange(30), rng.randrange(30)
            batch.setdefault(src, []).append((dst, rng.randrange(100_000)))
        for src, transitions in batch.items():
            neighbours = owned.setdefault(src, ItemNeighbours())
            add_transitions(src, transitions, neighbours, WalkStarter(), 0.0, half_life)
        changed = tables.apply(batch)
        assert set(changed) == set(batch)
        read = rng.randrange(30)  # hop tables read between batches follow the next ones
        expected = owned[read].hop_table() if read in owned else NO_HOPS
        assert tables.hops_here(read) == expected
    assert len(tables) == len(owned)
    for item, neighbours in owned.items():
        assert tables.get(item).to_bytes() == neighbours.to_bytes()
    assert sum(len(tables.get(item)) for item in owned) == sum(len(n) for n in owned.values())
    assert len(tables.get(10_000)) == 0  # no transitions out of it: no hop from it
    restored = StepTables(half_life)
    restored.load([(5, _neighbours({7: 1}).to_bytes())])
    assert restored.hops_here(5)[0].tolist() == [7]  # read, then replaced by the next load
    restored.load((item, tables.get(item).to_bytes()) for item in owned)
    assert all(restored.get(i).to_bytes() == n.to_bytes() for i, n in owned.items())
    assert restored.hops_here(5) == owned[5].hop_table() != NO_HOPS
    assert restored.hops_here(3) == owned[3].hop_table() != NO_HOPS  # cached, then forgotten
    restored.forget([3, 10_000])  # an item it holds, and one it does not
    assert len(restored) == len(owned) - 1
    assert len(restored.get(3)) == 0
    assert restored.hops_here(3) == NO_HOPS
    assert all(restored.get(i).to_bytes() == n.to_bytes() for i, n in owned.items() if i != 3)


# item -> {next item: weight}: 2 -> 1 goes back, 2 -> 3 stays next to 1 (1 -> 3 exists),
# 2 -> 4 moves away
SECOND_ORDER_GRAPH = {1: {2: 1.0, 3: 1.0}, 2: {1: 2.0, 3: 3.0, 4: 5.0}, 3: {1: 1.0}, 4: {1: 1.0}}


@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.5, 2.0), (4.0, 0.25)])
def test_second_order_hops_follow_node2vec_biases(p: float, q: float) -> None:
    graph = {item: _weighted(row) for item, row in SECOND_ORDER_GRAPH.items()}
    walks = {2: [Walk((1, 2), t) for t in range(6_000)]}  # each makes one hop from 2, after 1
    advanced = advance_walks(walks, _here(graph), 1, 3, random.Random(11), p=p, q=q)
    observed = Counter(walk.path[2] for walk in advanced.done)
    bias = {1: 1 / p, 3: 1.0, 4: 1 / q}
    unnormalized = {x: w * bias[x] for x, w in SECOND_ORDER_GRAPH[2].items()}
    total = sum(unnormalized.values())
    expected = [6_000 * unnormalized[x] / total for x in (1, 3, 4)]
    assert chisquare([observed[x] for x in (1, 3, 4)], expected).pvalue > 0.001, observed


def test_node2vec_walks_need_the_previous_items_counts_and_positive_parameters() -> None:
    graph = {2: _weighted({1: 1.0})}
    with pytest.raises(ValueError, match="previous item 9"):
        advance_walks({2: [Walk((9, 2), 0)]}, _here(graph), 1, 3, random.Random(0), p=2.0)
    with pytest.raises(ValueError, match="positive"):
        advance_walks({2: [Walk((2,), 0)]}, _here(graph), 1, 3, random.Random(0), q=0.0)


def _weighted(row: dict[int, float]) -> ItemNeighbours:
    neighbours = ItemNeighbours()
    for item, weight in row.items():
        neighbours.add(item, int(weight))
    return neighbours
