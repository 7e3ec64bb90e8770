"""Which sightings of a new edge a task still sends towards the items topic.

Each new edge is a sighting of each of its items by the other. The JVM counts an item's
sightings and keeps only its first `2 * limit` (by then the item knows `limit` others), so
a task that has itself sent that many for an item would send only ones the JVM drops. In a
replay most transitions are new edges, and sending every one both ways through the JVM's
keyed counts took about a third of a replay's time; a count per item here skips them.

A hint, not state: a restarted task counts from zero again and resends some, which the
JVM's restored counts drop as they would have, so the items topic is the same; nothing here
needs a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SightingFilter"]


class SightingFilter:
    """Sightings sent per item by this task; an item past `per_item` gets no more.

    Forgets everything when it tracks `max_items` items: only a hint, it then resends up to
    `per_item` sightings per item rather than grow with the catalogue."""

    def __init__(self, per_item: int, max_items: int) -> None:
        if per_item < 1 or max_items < 1:
            raise ValueError(f"per_item and max_items must be positive: {per_item}, {max_items}")
        self._per_item = per_item
        self._max_items = max_items
        self._sent: dict[int, int] = {}

    def new_edges(self, src: int, dsts: list[int]) -> list[tuple[int, int]]:
        """The sightings (item, seen item) still worth sending for new edges src -> dst."""
        sent, per_item = self._sent, self._per_item
        wanted: list[tuple[int, int]] = []
        for dst in dsts:
            count = sent.get(src, 0)
            if count < per_item:
                sent[src] = count + 1
                wanted.append((src, dst))
            count = sent.get(dst, 0)
            if count < per_item:
                sent[dst] = count + 1
                wanted.append((dst, src))
        if len(sent) > self._max_items:
            sent.clear()
        return wanted

    def forget(self, items: Iterable[int]) -> None:
        """Items this task forgot (`stream.item_idle_ttl_s`): their next sightings count from
        zero here, as they do in the JVM. Another task's count of such an item is not reset,
        so until its own counts are cleared it may hold back sightings of the item by that
        task's items (new in-edges of the item), not those of the item's own new edges."""
        for item in items:
            self._sent.pop(item, None)
