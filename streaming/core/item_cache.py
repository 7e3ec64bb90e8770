"""The items a task decoded lately, kept decoded between batches.

Decoding an item's state costs time in its degree, and popular items, whose degree is
highest, are the ones touched in batch after batch. The task that owns an item is the only
writer of its state, so a decoded copy stays right for as long as the task lives.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ItemCache"]

V = TypeVar("V")


class ItemCache(Generic[V]):
    """Least recently used items, up to `budget` in total `size` (the oldest go first; the
    newest always stays)."""

    def __init__(self, budget: int, size: Callable[[V], int]) -> None:
        self._budget = budget
        self._size = size
        self._entries: OrderedDict[int, tuple[V, int]] = OrderedDict()
        self._total = 0

    def get(self, item: int) -> V | None:
        entry = self._entries.get(item)
        if entry is None:
            return None
        self._entries.move_to_end(item)
        return entry[0]

    def put(self, item: int, value: V) -> None:
        """Keep `value` for `item`; put it again after changing it, to count its new size."""
        entries = self._entries
        old = entries.get(item)
        size = self._size(value)
        entries[item] = (value, size)
        if old is None:
            self._total += size
        else:  # replaced in place: moved to the end only if not there already
            self._total += size - old[1]
            entries.move_to_end(item)
        while self._total > self._budget and len(self._entries) > 1:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._total -= evicted

    def remove(self, item: int) -> None:
        entry = self._entries.pop(item, None)
        if entry is not None:
            self._total -= entry[1]

    def __len__(self) -> int:
        return len(self._entries)
