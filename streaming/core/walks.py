"""Walks that travel from item to item: the per-item step of the streaming job.

A walk is a path of item ids plus the newest event time that caused it; each hop is a
draw from the current item's `ItemNeighbours` (its step table built once). Items are
sharded (item id mod a shard count) and a task owns many shards; walks keep stepping while
the counts of the next item are at hand (its shard is the one being called, or the task
holds it decoded), and the others travel as one message per shard on the feedback topic,
keyed by that shard, so the task that owns it (and only it) holds the counts the next hops
need (the message's format: `streaming.records`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from streaming.core.neighbours import ItemNeighbours

__all__ = [
    "Advanced",
    "Walk",
    "WalkStarter",
    "add_transitions",
    "advance_walks",
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
    neighbours_here: Callable[[int], ItemNeighbours | None],
    shards: int,
    length: int,
    rng: random.Random,
) -> Advanced:
    """Step each walk (by the item it stands on) until it is finished, i.e. has `length`
    items or stands on an item without out-edges, or stands on an item whose counts are not
    here (`neighbours_here` gives None): it then leaves for that item's shard (item id mod
    `shards`). A hop to an item that is here needs no message.

    Walk by walk to the end: a hop is a draw and an append. (Stepping all walks at an item
    together and regrouping them by their next item cost more than the draws.)"""
    result = Advanced()
    steps = 0
    for item, batch in walks.items():
        for walk in batch:
            path, here, away = list(walk.path), item, False
            while len(path) < length:
                neighbours = neighbours_here(here)
                if neighbours is None or neighbours.weight == 0:
                    away = neighbours is None
                    break
                here = neighbours.step(rng)
                path.append(here)
                steps += 1
            moved = Walk(tuple(path), walk.newest_event_time)
            if away:
                result.outbound.setdefault(here % shards, {}).setdefault(here, []).append(moved)
            else:
                result.done.append(moved)
    result.steps = steps
    return result


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
