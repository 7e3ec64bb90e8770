"""One item's out-neighbour counts, the walk step from it, and the cold-start average.

The streaming job keeps one `ItemNeighbours` per item in keyed state, so no task ever holds
the whole transition matrix (the reference pipeline collected it on one driver). A walk hop
is sampled where the current item's counts live.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from itertools import accumulate

import numpy as np
import numpy.typing as npt

__all__ = ["ItemNeighbours", "neighbour_average"]


class ItemNeighbours:
    """Per-item keyed state: transition counts to each next item, and their sum (the weight).

    Kept as two int64 arrays (neighbours in ascending order, their counts) and nothing else,
    so writing the state back after every update is a copy of memory (`to_bytes`) and so is
    reading it (`from_bytes`): a task re-reads the items it does not keep decoded, and an
    index built on each read (a dict of every neighbour) would take half of the item
    function's time once the items of a long replay outgrow the cache. An item's bytes grow with
    its degree, and popular items, the most updated, have the highest.
    """

    def __init__(self) -> None:
        self._neighbours = array("q")
        self._counts = array("q")
        self._weight: int | None = 0
        self._cumulative: array[int] | None = None

    def add(self, neighbour: int, count: int = 1) -> bool:
        """Count `count` transitions to `neighbour`; True when it is a new neighbour."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        neighbours = self._neighbours
        position = bisect_left(neighbours, neighbour)
        new = position == len(neighbours) or neighbours[position] != neighbour
        if new:
            neighbours.insert(position, neighbour)
            self._counts.insert(position, count)
        else:
            self._counts[position] += count
        if self._weight is not None:
            self._weight += count
        self._cumulative = None
        return new

    @property
    def weight(self) -> int:
        """Summed when first asked after a read: a replay, which starts no walks, never asks."""
        if self._weight is None:
            self._weight = sum(self._counts)
        return self._weight

    def __len__(self) -> int:
        return len(self._neighbours)

    def count(self, neighbour: int) -> int:
        position = bisect_left(self._neighbours, neighbour)
        if position < len(self._neighbours) and self._neighbours[position] == neighbour:
            return self._counts[position]
        return 0

    @property
    def counts(self) -> dict[int, int]:
        return dict(zip(self._neighbours, self._counts, strict=True))

    def merge(self, other: ItemNeighbours) -> None:
        for neighbour, count in other.counts.items():
            self.add(neighbour, count)

    def step(self, rng: random.Random) -> int:
        """The next hop, drawn with probability count / weight (O(log degree)).

        Draws an integer in [0, weight) and finds its bucket in the cumulative counts, so
        every neighbour gets exactly its share (the reference's `randomDouble >= prob` test
        picked the wrong neighbour). Plain Python, not numpy: walks step one at a time, where
        numpy's call overhead cost several times the draw.
        """
        if self.weight == 0:
            raise ValueError("an item without out-neighbours has no next hop")
        if self._cumulative is None:
            self._cumulative = array("q", accumulate(self._counts))
        return self._neighbours[bisect_right(self._cumulative, rng.randrange(self.weight))]

    def to_bytes(self) -> bytes:
        return self._neighbours.tobytes() + self._counts.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemNeighbours:
        state = cls()
        half = len(data) // 2
        state._neighbours.frombytes(data[:half])
        state._counts.frombytes(data[half:])
        state._weight = None
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemNeighbours):
            return NotImplemented
        return self.counts == other.counts

    def __repr__(self) -> str:
        return f"ItemNeighbours({self.counts})"

    def __getstate__(self) -> bytes:
        return self.to_bytes()

    def __setstate__(self, data: bytes) -> None:
        self.__dict__.update(ItemNeighbours.from_bytes(data).__dict__)


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
