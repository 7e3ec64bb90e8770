import random
from collections import Counter

import pytest

from streaming.core.sightings import SightingFilter


def test_an_item_is_sent_until_it_has_its_share_each_edge_both_ways() -> None:
    sightings = SightingFilter(per_item=2, max_items=100)
    assert sightings.new_edges(1, [2, 3]) == [(1, 2), (2, 1), (1, 3), (3, 1)]
    assert sightings.new_edges(1, [4]) == [(4, 1)]  # item 1 has had 2
    assert sightings.new_edges(2, [4]) == [(2, 4), (4, 2)]
    assert sightings.new_edges(4, [5, 6]) == [(5, 4), (6, 4)]


def test_forgetting_resends_rather_than_grow() -> None:
    sightings = SightingFilter(per_item=1, max_items=3)
    assert sightings.new_edges(1, [2, 3]) == [(1, 2), (2, 1), (3, 1)]  # tracks 3: still known
    assert sightings.new_edges(1, [4]) == [(4, 1)]  # now 4: forgets all
    assert sightings.new_edges(1, [5]) == [(1, 5), (5, 1)]


def test_an_item_the_job_forgot_is_sent_again() -> None:
    sightings = SightingFilter(per_item=1, max_items=100)
    assert sightings.new_edges(1, [2]) == [(1, 2), (2, 1)]
    assert sightings.new_edges(1, [3]) == [(3, 1)]  # item 1 has had its share
    sightings.forget([1, 9])  # 9: never sent
    assert sightings.new_edges(1, [4]) == [(1, 4), (4, 1)]


def test_each_item_is_sent_at_most_its_share_when_nothing_is_forgotten() -> None:
    rng = random.Random(5)
    sightings = SightingFilter(per_item=3, max_items=1_000)
    sent = [
        pair
        for _ in range(2_000)
        for pair in sightings.new_edges(rng.randrange(50), [rng.randrange(50), rng.randrange(50)])
    ]
    per_item = Counter(item for item, _ in sent)
    assert max(per_item.values()) == 3
    assert len(sent) == 3 * len(per_item)


def _jvm_keeps(arrivals: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """The JVM's rule: an item's first `limit` sightings, in order of arrival."""
    seen: dict[int, int] = {}
    kept = []
    for item, other in arrivals:
        seen[item] = seen.get(item, 0) + 1
        if seen[item] <= limit:
            kept.append((item, other))
    return kept


@pytest.mark.parametrize("max_items", [1_000, 7])
def test_the_jvm_keeps_the_same_sightings_with_the_filter_as_without(max_items: int) -> None:
    """Two tasks, each with its filter (one that forgets often, as after restarts), their
    sightings interleaved at random as the JVM receives them (each task's in order)."""
    rng = random.Random(11)
    limit = 4
    tasks = [SightingFilter(limit, max_items) for _ in range(2)]
    sent: list[list[tuple[tuple[int, int], bool]]] = [[], []]  # every sighting, and if sent
    for _ in range(3_000):
        task = rng.randrange(2)
        src, dsts = rng.randrange(40), [rng.randrange(40) for _ in range(rng.randrange(1, 4))]
        wanted = iter(tasks[task].new_edges(src, dsts))
        next_wanted = next(wanted, None)
        for pair in (pair for dst in dsts for pair in ((src, dst), (dst, src))):
            sent[task].append((pair, pair == next_wanted))
            if pair == next_wanted:
                next_wanted = next(wanted, None)
        assert next_wanted is None  # what it sends is some of them, in their order
    # One order of arrival for all of them; the filtered ones arrive in the same order.
    queues = [iter(stream) for stream in sent]
    arrivals = [next(queues[rng.randrange(2)], None) for _ in range(4 * 3_000 * 3)]
    arrivals = [a for a in arrivals if a] + [a for queue in queues for a in queue]
    assert len(arrivals) == sum(map(len, sent))

    # Each task's skipped sightings come after `limit` of its own for that item, so they
    # arrive after `limit` of the item's in any interleaving: the JVM drops them either way.
    kept = _jvm_keeps([pair for pair, _ in arrivals], limit)
    assert _jvm_keeps([pair for pair, was_sent in arrivals if was_sent], limit) == kept
