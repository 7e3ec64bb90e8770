"""One user's high ratings, in event-time order, turned into item-to-item transitions.

Batch applies these rules to a whole file at once (`streaming.embeddings.graph`) and a test
holds the two to the same answers; the demo follows each user with it. The streaming job
applies the same order in Flink SQL (`streaming.job.pipeline`), where an event at or behind
the watermark is late for every user, not only for those whose sequence has passed its
position.

Rules (the reference pipeline's defects fixed):
- order is by integer event time, ties broken by item id (never by string timestamps);
- an exact duplicate (same item at the same event time) counts once;
- consecutive ratings of the same item give no transition (a self-loop teaches nothing);
- events may arrive out of order up to the watermark: they are buffered until the watermark
  passes them, then released in order; an event at or before the last released position
  is late, reported to the caller, and changes nothing.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = ["Admission", "Transition", "UserSequence"]


class Transition(NamedTuple):
    src: int
    dst: int
    event_time: int
    """Event time of the rating of `dst`: the newest event this transition depends on."""


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass
class UserSequence:
    """One user's state: small, picklable, and independent of any framework."""

    last: tuple[int, int] | None = None
    """(event_time, item_id) of the last released rating."""
    pending: list[tuple[int, int]] = field(default_factory=list)
    """Buffered (event_time, item_id), sorted, not yet passed by the watermark."""

    def add(self, item_id: int, event_time: int) -> Admission:
        position = (event_time, item_id)
        if self.last is not None and position <= self.last:
            return Admission.DUPLICATE if position == self.last else Admission.LATE
        index = bisect.bisect_left(self.pending, position)
        if index < len(self.pending) and self.pending[index] == position:
            return Admission.DUPLICATE
        self.pending.insert(index, position)
        return Admission.ACCEPTED

    def advance(self, watermark: int) -> list[Transition]:
        """Release every buffered rating at or before `watermark`; return its transitions."""
        released = bisect.bisect_right(self.pending, (watermark, float("inf")))
        transitions = []
        previous = self.last[1] if self.last is not None else None
        for position in self.pending[:released]:
            when, item = position
            if previous is not None and previous != item:
                transitions.append(Transition(previous, item, when))
            previous = item
            self.last = position
        del self.pending[:released]
        return transitions

    def next_release_time(self) -> int | None:
        """Event time of the earliest buffered rating: when the job should next call advance."""
        return self.pending[0][0] if self.pending else None
