"""One item's out-neighbour counts, the walk step from it, and the cold-start average.

The streaming job keeps one `ItemNeighbours` per item in keyed state, so no task ever holds
the whole transition matrix (the reference pipeline collected it on one driver). A walk hop
is sampled where the current item's counts live.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from itertools import accumulate
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "NO_HOPS",
    "HopTable",
    "ItemNeighbours",
    "draw_hop",
    "idle_items",
    "leads_to",
    "neighbour_average",
]


HopTable: TypeAlias = "tuple[array[int], array[float]]"
"""An item's neighbours, ascending, and their cumulative weights (`ItemNeighbours.hop_table`)."""
NO_HOPS: HopTable = (array("q"), array("d"))
"""The hop table of an item without out-weight: a walk that reaches it ends there."""


class ItemNeighbours:
    """Per-item keyed state: the weight of the transitions to each next item, and their sum.

    Without a half-life a transition weighs 1, so a weight is a count. With a half-life h
    (event-time seconds), a transition at event time t weighs 2^((t - T) / h) as of time T:
    each is stored as 2^((t - reference) / h) against the item's reference time, so a new
    transition is one addition and an old one never needs updating. A walk step and a
    neighbour average use only the ratios of one item's weights, which the reference does not
    change; `weight_at` gives the total as of any time. The reference is the item's first
    transition time and moves to a later transition's time (rescaling every weight) only when
    that one would weigh more than 2^`REFERENCE_SPAN`, so a weight never overflows. The
    weights are a function of the set of transitions, whatever order they come in, up to
    floating-point rounding (relative 1e-15).

    Kept as a reference time and two arrays (neighbours in ascending order, their weights) and
    nothing else, so writing the state back after every update is a copy of memory
    (`to_bytes`) and so is reading it (`from_bytes`): a task re-reads the items it does not
    keep decoded, and an index built on each read (a dict of every neighbour) would take half
    of the item function's time once the items of a long replay outgrow the cache. An item's
    bytes grow with its degree, and popular items, the most updated, have the highest.
    """

    REFERENCE_SPAN = 64
    """Half-lives a transition may lie after the reference before the reference moves."""

    def __init__(self) -> None:
        self._reference: int | None = None
        self._neighbours = array("q")
        self._weights = array("d")
        self._weight: float | None = 0.0
        self._hops: HopTable | None = None

    def add(
        self,
        neighbour: int,
        count: int = 1,
        *,
        event_time: int | None = None,
        half_life_s: float | None = None,
    ) -> bool:
        """Count `count` transitions to `neighbour` (at `event_time`, decayed by `half_life_s`
        when one is given); True when it is a new neighbour."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        weight = float(count)
        if half_life_s is not None:
            if event_time is None or half_life_s <= 0:
                raise ValueError("a decayed transition needs its event time and a half-life > 0")
            weight *= self._decayed_weight(event_time, half_life_s)
        neighbours = self._neighbours
        position = bisect_left(neighbours, neighbour)
        new = position == len(neighbours) or neighbours[position] != neighbour
        if new:
            neighbours.insert(position, neighbour)
            self._weights.insert(position, weight)
        else:
            self._weights[position] += weight
        if self._weight is not None:
            self._weight += weight
        self._hops = None
        return new

    def _decayed_weight(self, event_time: int, half_life_s: float) -> float:
        """A transition's weight at `event_time` against the reference (moved if need be)."""
        if self._reference is None:
            self._reference = event_time
        half_lives = (event_time - self._reference) / half_life_s
        if half_lives > self.REFERENCE_SPAN:
            scale = 2.0**-half_lives
            self._weights = array("d", (w * scale for w in self._weights))
            self._weight = None
            self._reference, half_lives = event_time, 0.0
        return float(2.0**half_lives)

    @property
    def reference(self) -> int | None:
        """The event time the weights are stored as of (None without decayed transitions)."""
        return self._reference

    @property
    def weight(self) -> float:
        """Summed when first asked after a read: a replay, which starts no walks, never asks."""
        if self._weight is None:
            self._weight = sum(self._weights)
        return self._weight

    def weight_at(self, event_time: int, half_life_s: float | None) -> float:
        """The summed weight as of `event_time` (the stored sum without a half-life)."""
        if half_life_s is None or self._reference is None:
            return self.weight
        return float(self.weight * 2.0 ** ((self._reference - event_time) / half_life_s))

    def __len__(self) -> int:
        return len(self._neighbours)

    def weight_of(self, neighbour: int) -> float:
        position = bisect_left(self._neighbours, neighbour)
        if position < len(self._neighbours) and self._neighbours[position] == neighbour:
            return self._weights[position]
        return 0.0

    @property
    def weights(self) -> dict[int, float]:
        return dict(zip(self._neighbours, self._weights, strict=True))

    def hop_table(self) -> HopTable:
        """The neighbours (ascending) and their cumulative weights, to draw hops from
        (`draw_hop`), built on first use after a change; `NO_HOPS` (both empty) for an item
        without out-weight."""
        hops = self._hops
        if hops is None:
            cumulative = array("d", accumulate(self._weights))
            hops = self._hops = (
                (self._neighbours, cumulative) if cumulative and cumulative[-1] > 0 else NO_HOPS
            )
        return hops

    def to_bytes(self) -> bytes:
        reference = array("q", [-1 if self._reference is None else self._reference])
        return reference.tobytes() + self._neighbours.tobytes() + self._weights.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemNeighbours:
        state = cls()
        reference = array("q")
        reference.frombytes(data[:_REFERENCE_BYTES])
        state._reference = None if reference[0] == -1 else reference[0]
        half = _REFERENCE_BYTES + (len(data) - _REFERENCE_BYTES) // 2
        state._neighbours.frombytes(data[_REFERENCE_BYTES:half])
        state._weights.frombytes(data[half:])
        state._weight = None
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemNeighbours):
            return NotImplemented
        return self._reference == other._reference and self.weights == other.weights

    def __repr__(self) -> str:
        return f"ItemNeighbours({self.weights}, reference={self._reference})"

    def __getstate__(self) -> bytes:
        return self.to_bytes()

    def __setstate__(self, data: bytes) -> None:
        self.__dict__.update(ItemNeighbours.from_bytes(data).__dict__)


_REFERENCE_BYTES = 8


def draw_hop(neighbours: array[int], cumulative: array[float], uniform: float) -> int:
    """The neighbour whose share of the cumulative weights holds `uniform` (in [0, 1)) times
    the total: every neighbour is drawn with exactly its share (the reference's
    `randomDouble >= prob` test picked the wrong neighbour). Plain Python, not numpy: walks
    step one at a time, where numpy's call overhead cost several times the draw."""
    position = bisect_right(cumulative, uniform * cumulative[-1])
    if position == len(cumulative):  # rounding landed the draw on the total: last edge
        position = bisect_left(cumulative, cumulative[-1])
    return neighbours[position]


def leads_to(hops: HopTable, item: int) -> bool:
    """Whether `item` is among the neighbours of `hops` (ascending): Node2vec's test of
    whether a proposed hop stays within the previous item's neighbours."""
    neighbours = hops[0]
    position = bisect_left(neighbours, item)
    return position < len(neighbours) and neighbours[position] == item


def neighbour_average(
    neighbour_counts: Mapping[int, float], vectors: Mapping[int, npt.NDArray[np.float32]]
) -> npt.NDArray[np.float32] | None:
    """Count-weighted mean of the neighbours that have vectors; None if none has one.

    For an item too new or too rare for the model: its in- and out-neighbours' counts
    (summed when an item is both) weight their trained vectors.
    """
    total = 0.0
    acc: npt.NDArray[np.float64] | None = None
    for neighbour, count in neighbour_counts.items():
        vector = vectors.get(neighbour)
        if vector is None or count <= 0:
            continue
        acc = count * vector.astype(np.float64) if acc is None else acc + count * vector
        total += count
    if acc is None:
        return None
    return (acc / total).astype(np.float32)


def idle_items(newest: Mapping[int, int], as_of: int | None, idle_ttl_s: int) -> list[int]:
    """The items, in ascending order, whose newest transition out of them (`newest`, event
    time by item) lies more than `idle_ttl_s` before `as_of`; none without an `as_of`."""
    if as_of is None:
        return []
    return sorted(item for item, event_time in newest.items() if event_time < as_of - idle_ttl_s)
