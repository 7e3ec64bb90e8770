"""Walks that travel from item to item: the per-item step of the streaming job.

A walk is a path of item ids plus the newest event time that caused it. Walks travel in
batches: every walk currently at one item is stepped with one vectorised draw from that
item's `ItemNeighbours`, then regrouped by the item each one moved to; a batch is one message
on the feedback topic, keyed by its item, so the task that owns the item (and only it) holds
the counts the next hop needs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from streaming.core.neighbours import ItemNeighbours

__all__ = ["Walk", "WalkStarter", "decode_batch", "encode_batch", "step_walks"]


@dataclass(frozen=True)
class Walk:
    path: tuple[int, ...]
    newest_event_time: int


def encode_batch(item: int, walks: list[Walk]) -> str:
    return json.dumps(
        {"item": item, "walks": [[list(w.path), w.newest_event_time] for w in walks]},
        separators=(",", ":"),
    )


def decode_batch(text: str) -> tuple[int, list[Walk]]:
    record = json.loads(text)
    return int(record["item"]), [Walk(tuple(path), int(newest)) for path, newest in record["walks"]]


def step_walks(
    item: int,
    walks: list[Walk],
    neighbours: ItemNeighbours,
    length: int,
    rng: np.random.Generator,
) -> tuple[list[Walk], dict[int, list[Walk]]]:
    """Advance every walk at `item` one hop: (finished walks, walks to send on by next item).

    A walk is finished when it has `length` items or stands on an item without out-edges.
    """
    done = [walk for walk in walks if len(walk.path) >= length]
    moving = [walk for walk in walks if len(walk.path) < length]
    if not moving:
        return done, {}
    if neighbours.weight == 0:
        return done + moving, {}
    nexts = neighbours.step(rng, len(moving)).tolist()
    onward: dict[int, list[Walk]] = defaultdict(list)
    for walk, nxt in zip(moving, nexts, strict=True):
        moved = Walk((*walk.path, nxt), walk.newest_event_time)
        if len(moved.path) >= length:
            done.append(moved)
        else:
            onward[nxt].append(moved)
    return done, dict(onward)


@dataclass
class WalkStarter:
    """Walks to start at an item as its weight grows: `rate` walks per new transition.

    Fractions carry over, so over time an item starts exactly `rate` x its weight gain.
    """

    rate: float
    credit: float = field(default=0.0)

    def on_weight_gain(self, gain: int) -> int:
        self.credit += gain * self.rate
        starts = int(self.credit)
        self.credit -= starts
        return starts
