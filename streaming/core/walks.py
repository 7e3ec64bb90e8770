"""Walks that travel from item to item: the per-item step of the streaming job.

A walk is a path of item ids plus the newest event time that caused it; each hop is a
draw from the current item's `ItemNeighbours` (its step table built once), first-order
(DeepWalk) or biased by the previous item (Node2vec's p and q). The job steps walks in one
of two ways (`stream.walk_stage`, docs/walks.md):

- replicated: every walk task holds `StepTables`, a copy of every item's step table rebuilt
  from the transitions the item stage counted, in its order, so a walk is stepped to its end
  where it starts; `walks_here` splits the walks started at an item among the tasks;
- routed: items are sharded (item id mod a shard count) and a task owns many shards; walks
  keep stepping while the counts of the next item are at hand, and the others travel as one
  message per shard on the feedback topic, keyed by that shard, so the task that owns it
  (and only it) holds the counts the next hops need (the format: `streaming.records`).
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streaming.core.neighbours import NO_HOPS, HopTable, ItemNeighbours, draw_hop, leads_to

__all__ = [
    "Advanced",
    "StepTables",
    "Walk",
    "WalkStarter",
    "add_transitions",
    "advance_walks",
    "walks_here",
]


@dataclass(frozen=True)
class Walk:
    path: tuple[int, ...]
    newest_event_time: int


@dataclass
class Advanced:
    """What `advance_walks` did: finished walks, walks to send on (by shard, then item), and
    the hops it drew."""

    done: list[Walk] = field(default_factory=list)
    outbound: dict[int, dict[int, list[Walk]]] = field(default_factory=dict)
    steps: int = 0


def advance_walks(
    walks: Mapping[int, list[Walk]],
    hops_here: Callable[[int], HopTable | None],
    shards: int,
    length: int,
    rng: random.Random,
    p: float = 1.0,
    q: float = 1.0,
) -> Advanced:
    """Step each walk (by the item it stands on) until it is finished, i.e. has `length`
    items or stands on an item without out-edges (`NO_HOPS`), or stands on an item whose
    counts are not here (`hops_here` gives None): it then leaves for that item's shard (item
    id mod `shards`). A hop to an item that is here needs no message.

    With p or q other than 1, a hop after the first is Node2vec's: the next item x is drawn
    in proportion to weight(here, x) times 1/p if x is the previous item, 1 if the previous
    item has a transition to x, and 1/q otherwise, as `streaming.embeddings.walks` draws it
    (exact rejection sampling: a first-order proposal is kept with probability bias / the
    largest bias). The previous item's counts must then be here.

    Walk by walk to the end: a hop is a table lookup, a draw and an append. (Stepping all
    walks at an item together and regrouping them by their next item cost more than the
    draws.) A first-order hop is `draw_hop` written out in the loop: the call cost as much
    as the draw."""
    if p <= 0 or q <= 0:
        raise ValueError(f"Node2vec p and q must be positive, got p={p}, q={q}")
    second_order = not (p == 1.0 and q == 1.0)
    bias_max = max(1.0 / p, 1.0, 1.0 / q)
    uniform = rng.random
    result = Advanced()
    done, outbound = result.done, result.outbound
    steps = 0
    for item, batch in walks.items():
        for walk in batch:
            path, here, away = list(walk.path), item, False
            while len(path) < length:
                hops = hops_here(here)
                if hops is None:
                    away = True
                    break
                neighbours, cumulative = hops
                if not cumulative:
                    break
                if second_order and len(path) > 1:
                    here = _biased_step(hops, path[-2], hops_here, p, q, bias_max, rng)
                else:
                    total = cumulative[-1]
                    position = bisect_right(cumulative, uniform() * total)
                    if position == len(cumulative):
                        position = bisect_left(cumulative, total)
                    here = neighbours[position]
                path.append(here)
                steps += 1
            moved = Walk(tuple(path), walk.newest_event_time)
            if away:
                outbound.setdefault(here % shards, {}).setdefault(here, []).append(moved)
            else:
                done.append(moved)
    result.steps = steps
    return result


def _biased_step(
    hops: HopTable,
    previous: int,
    hops_here: Callable[[int], HopTable | None],
    p: float,
    q: float,
    bias_max: float,
    rng: random.Random,
) -> int:
    """One Node2vec hop from an item (its hop table), having come from `previous`."""
    before = hops_here(previous)
    if before is None:
        raise ValueError(f"a Node2vec hop needs the counts of the previous item {previous}")
    while True:
        proposal = draw_hop(*hops, rng.random())
        if proposal == previous:
            bias = 1.0 / p
        elif leads_to(before, proposal):
            bias = 1.0
        else:
            bias = 1.0 / q
        if rng.random() * bias_max < bias:
            return proposal


def walks_here(
    starts: Sequence[tuple[int, int, int]], task: int, tasks: int
) -> list[tuple[int, int, int]]:
    """The walks of one record of walk work, (item, event time, count) each, that task `task`
    of `tasks` steps, in the same form. The record's walks are numbered in order from an
    offset the record itself gives ((item + event time) of its first start) and the j-th is
    task j mod tasks's: every task computes the same split, and each steps an equal share of
    every record, give or take one walk, however its walks fall on items."""
    if not starts:
        return []
    item, event_time, _ = starts[0]
    number = (item + event_time) % tasks  # of the record's first walk
    mine = []
    for item, event_time, count in starts:
        first = (task - number) % tasks  # this task's first walk among these
        if first < count:
            mine.append((item, event_time, (count - first - 1) // tasks + 1))
        number += count
    return mine


_NO_EDGES = ItemNeighbours()


class _HopTables(dict[int, HopTable]):
    """Hop tables by item, each built on first use from the item's counts and kept until they
    change; `NO_HOPS`, not kept, for an item without any (it holds nothing to forget)."""

    def __init__(self, items: Mapping[int, ItemNeighbours]) -> None:
        super().__init__()
        self._items = items

    def __missing__(self, item: int) -> HopTable:
        neighbours = self._items.get(item)
        if neighbours is None:
            return NO_HOPS
        hops = self[item] = neighbours.hop_table()
        return hops


class StepTables:
    """A walk task's copy of every item's step table.

    Rebuilt by applying the transitions the item stage counted, in the order it counted
    them (each item has one owner in the item stage, and its transitions reach every walk
    task in that owner's order), with the same arithmetic: each table equals the item
    stage's, bit for bit, decayed or not. Read-only for walks."""

    def __init__(self, half_life_s: float | None) -> None:
        self.half_life_s = half_life_s
        self._items: dict[int, ItemNeighbours] = {}
        self._hops = _HopTables(self._items)
        self.hops_here: Callable[[int], HopTable] = self._hops.__getitem__
        """Any item's hop table, for `advance_walks`: every item is here."""

    def load(self, stored: Iterable[tuple[int, bytes]]) -> None:
        """Tables as `ItemNeighbours.to_bytes` stored them (on a restore)."""
        for item, data in stored:
            self._items[item] = ItemNeighbours.from_bytes(data)
            self._hops.pop(item, None)

    def apply(self, transitions: Mapping[int, list[tuple[int, int]]]) -> dict[int, ItemNeighbours]:
        """Count transitions (next item, event time) by source item; return the changed
        tables."""
        changed: dict[int, ItemNeighbours] = {}
        half_life_s = self.half_life_s
        for src, batch in transitions.items():
            neighbours = self._items.get(src)
            if neighbours is None:
                neighbours = self._items[src] = ItemNeighbours()
            for dst, event_time in batch:
                neighbours.add(dst, event_time=event_time, half_life_s=half_life_s)
            changed[src] = neighbours
            self._hops.pop(src, None)
        return changed

    def forget(self, items: Iterable[int]) -> None:
        """Drop the tables of items the item stage forgot (`stream.item_idle_ttl_s`)."""
        for item in items:
            self._items.pop(item, None)
            self._hops.pop(item, None)

    def get(self, item: int) -> ItemNeighbours:
        """An item's table (an empty one for an item without transitions out of it)."""
        neighbours = self._items.get(item)
        return _NO_EDGES if neighbours is None else neighbours

    def __len__(self) -> int:
        return len(self._items)


_ROUNDING = 1e-9


@dataclass
class WalkStarter:
    """Per-item walk starts: on weight gain (new and changing parts of the graph are sampled
    first) and on a background refresh (the whole graph, in proportion to weight).

    Rates are passed in, not kept here, so a restart with new settings applies them. Fractions
    carry over, so over time an item starts exactly the expected number of walks.
    """

    credit: float = field(default=0.0)
    newest_event_time: int = field(default=0)
    """Of the transitions out of the item: what a refresh walk from it covers."""

    def on_weight_gain(self, gain: int, walks_per_weight: float, event_time: int) -> int:
        self.newest_event_time = max(self.newest_event_time, event_time)
        return self._take(gain * walks_per_weight)

    def on_refresh(self, weight: float, walks_per_weight_hour: float, elapsed_s: float) -> int:
        return self._take(weight * walks_per_weight_hour * elapsed_s / 3600)

    def _take(self, expected: float) -> int:
        self.credit += expected
        # Sums of rates like 0.1 fall a hair short of whole numbers in floating point.
        starts = int(self.credit + _ROUNDING)
        self.credit -= starts
        return starts


def add_transitions(
    item: int,
    transitions: list[tuple[int, int]],
    neighbours: ItemNeighbours,
    starter: WalkStarter,
    walks_per_weight: float,
    half_life_s: float | None = None,
) -> tuple[list[Walk], list[int]]:
    """Count transitions (next item, event time) out of `item`, decayed by `half_life_s` when
    one is given; return the walks they start, each carrying the event time of the transition
    that started it, and the neighbours counted for the first time (in order). Each
    transition starts walks at `walks_per_weight`, decayed or not: it is new behaviour."""
    started: list[Walk] = []
    new: list[int] = []
    for nxt, event_time in transitions:
        if neighbours.add(nxt, event_time=event_time, half_life_s=half_life_s):
            new.append(nxt)
        starts = starter.on_weight_gain(1, walks_per_weight, event_time)
        if starts:  # none in a replay, and none at all for most transitions at low rates
            started.extend([Walk((item,), event_time)] * starts)
    return started, new
