"""One item's out-neighbour counts, the walk step from it, and the cold-start average.

The streaming job keeps one `ItemNeighbours` per item in keyed state, so no task ever holds
the whole transition matrix (the reference pipeline collected it on one driver). A walk hop
is sampled where the current item's counts live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["ItemNeighbours", "neighbour_average"]


@dataclass
class ItemNeighbours:
    """Per-item keyed state: transition counts to each next item, and their sum (the weight)."""

    counts: dict[int, int] = field(default_factory=dict)
    weight: int = 0
    _table: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = field(
        default=None, repr=False, compare=False
    )

    def add(self, neighbour: int, count: int = 1) -> bool:
        """Count `count` transitions to `neighbour`; True when it is a new neighbour."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        new = neighbour not in self.counts
        self.counts[neighbour] = self.counts.get(neighbour, 0) + count
        self.weight += count
        self._table = None
        return new

    def merge(self, other: ItemNeighbours) -> None:
        for neighbour, count in other.counts.items():
            self.add(neighbour, count)

    def step(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """`n` next hops, each drawn with probability count / weight (O(log degree) each).

        Draws an integer in [0, weight) and finds its bucket in the cumulative counts, so
        every neighbour gets exactly its share (the reference's `randomDouble >= prob` test
        picked the wrong neighbour).
        """
        if self.weight == 0:
            raise ValueError("an item without out-neighbours has no next hop")
        if self._table is None:
            neighbours = np.fromiter(self.counts.keys(), np.int64, len(self.counts))
            cumulative = np.cumsum(np.fromiter(self.counts.values(), np.int64, len(self.counts)))
            self._table = (neighbours, cumulative)
        neighbours, cumulative = self._table
        draws = rng.integers(0, self.weight, size=n)
        return neighbours[np.searchsorted(cumulative, draws, side="right")]

    def __getstate__(self) -> dict[str, object]:
        return {"counts": self.counts, "weight": self.weight}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.counts = state["counts"]  # type: ignore[assignment]
        self.weight = state["weight"]  # type: ignore[assignment]
        self._table = None


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
