"""The trainer's durable corpus: samples on disk, with the Kafka offsets they came from.

Samples are appended to segment files (`seg-NNNNNNNN.txt`, one sample per line): a walk as
its item ids separated by spaces, a user's transition as `@USER EVENT_TIME SRC DST`.
`manifest.json` says how many bytes of each segment count, the next Kafka offset of every
consumed partition, and the neighbour counts announced on the items topic. The manifest is
replaced atomically (write, fsync, rename) after the segment data is fsynced, so after a
crash the trainer truncates segments to the manifest and resumes at its offsets: no sample
lost, none counted twice. Kafka's committed offsets only report progress.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from streaming.records import Sighting
from streaming.trainer.durable import write_atomically

__all__ = ["Corpus", "Entry", "Segment", "UserTransition"]

_MANIFEST = "manifest.json"


class UserTransition(NamedTuple):
    """One step of a user's ordered high ratings, from `src` to `dst` at `event_time`."""

    user: int
    event_time: int
    src: int
    dst: int


Entry = list[str] | UserTransition
"""A corpus entry: a walk's item ids as tokens, or a user's transition."""


def _line(entry: Sequence[int] | UserTransition) -> str:
    if isinstance(entry, UserTransition):
        return f"@{entry.user} {entry.event_time} {entry.src} {entry.dst}\n"
    return " ".join(map(str, entry)) + "\n"


def _entry(line: str) -> Entry:
    if line.startswith("@"):
        user, event_time, src, dst = line[1:].split()
        return UserTransition(int(user), int(event_time), int(src), int(dst))
    return line.split()


@dataclass
class Segment:
    name: str
    first: int  # sequence number of its first sample
    count: int
    size: int  # bytes that belong to the corpus; anything after them is a torn write

    @property
    def end(self) -> int:
        return self.first + self.count


@dataclass
class _State:
    next_seq: int = 0
    segments: list[Segment] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    neighbours: dict[int, dict[int, int]] = field(default_factory=dict)
    newest_event_time: int = 0


class Corpus:
    """Samples numbered 0, 1, 2, ... in arrival order; the newest `window` are kept."""

    def __init__(self, directory: Path, window: int, segment_samples: int) -> None:
        self.directory = directory
        self.window = window
        self.segment_samples = segment_samples
        directory.mkdir(parents=True, exist_ok=True)
        self._state = self._load()

    def _load(self) -> _State:
        path = self.directory / _MANIFEST
        if not path.exists():
            return _State()
        raw = json.loads(path.read_text(encoding="utf-8"))
        state = _State(
            next_seq=raw["next_seq"],
            segments=[Segment(**segment) for segment in raw["segments"]],
            offsets={key: int(value) for key, value in raw["offsets"].items()},
            neighbours={
                int(item): {int(n): int(c) for n, c in counts.items()}
                for item, counts in raw["neighbours"].items()
            },
            newest_event_time=int(raw.get("newest_event_time", 0)),
        )
        for segment in state.segments:  # drop what was written after the last manifest
            segment_path = self.directory / segment.name
            if segment_path.stat().st_size > segment.size:
                os.truncate(segment_path, segment.size)
        return state

    @property
    def next_seq(self) -> int:
        """Number of samples ever added (the sequence number the next one gets)."""
        return self._state.next_seq

    @property
    def first_seq(self) -> int:
        segments = self._state.segments
        return segments[0].first if segments else self._state.next_seq

    @property
    def offsets(self) -> Mapping[str, int]:
        """Next offset to consume, by "topic:partition"."""
        return dict(self._state.offsets)

    @property
    def newest_event_time(self) -> int:
        """The newest event time any sample in the corpus (or before its window) covers."""
        return self._state.newest_event_time

    @property
    def neighbours(self) -> Mapping[int, Mapping[int, int]]:
        """Neighbour counts of each item announced on the items topic."""
        return self._state.neighbours

    def append(
        self,
        samples: Sequence[Sequence[int] | UserTransition],
        offsets: Mapping[str, int],
        sightings: Sequence[Sighting],
        newest_event_time: int = 0,
    ) -> None:
        """Make `samples` (walks and user transitions) and the consumer position after them
        durable, together, with the items records read (`sightings`, in their order): each
        adds to its item's neighbour counts, and an item's first sighting replaces them (the
        job announces an item afresh after forgetting it)."""
        state = self._state
        lines = [_line(sample) for sample in samples if sample]
        written = 0
        while written < len(lines):
            segment = self._open_segment()
            room = self.segment_samples - segment.count
            chunk = "".join(lines[written : written + room]).encode()
            with (self.directory / segment.name).open("ab") as handle:
                handle.truncate(segment.size)
                handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            taken = min(room, len(lines) - written)
            segment.count += taken
            segment.size += len(chunk)
            state.next_seq += taken
            written += taken
        state.offsets.update(offsets)
        state.newest_event_time = max(state.newest_event_time, newest_event_time)
        for sighting in sightings:
            if sighting.first:
                state.neighbours[sighting.item] = dict(sighting.neighbours)
            else:
                state.neighbours.setdefault(sighting.item, {}).update(sighting.neighbours)
        self._prune()
        self._save()

    def _open_segment(self) -> Segment:
        segments = self._state.segments
        if not segments or segments[-1].count >= self.segment_samples:
            name = f"seg-{self._state.next_seq:012d}.txt"
            (self.directory / name).touch()
            segments.append(Segment(name, self._state.next_seq, 0, 0))
        return segments[-1]

    def _prune(self) -> None:
        """Forget whole segments that lie entirely before the window."""
        segments = self._state.segments
        while len(segments) > 1 and segments[0].end <= self._state.next_seq - self.window:
            (self.directory / segments.pop(0).name).unlink(missing_ok=True)

    def _save(self) -> None:
        raw: dict[str, Any] = {
            "next_seq": self._state.next_seq,
            "segments": [vars(segment) for segment in self._state.segments],
            "offsets": self._state.offsets,
            "newest_event_time": self._state.newest_event_time,
            "neighbours": {
                str(item): {str(n): c for n, c in counts.items()}
                for item, counts in self._state.neighbours.items()
            },
        }
        write_atomically(self.directory / _MANIFEST, json.dumps(raw, separators=(",", ":")))

    def samples(self, start: int = 0) -> Iterator[tuple[int, Entry]]:
        """(sequence number, entry) of the samples from `start` still in the corpus."""
        for segment in self._state.segments:
            if segment.end <= start:
                continue
            with (self.directory / segment.name).open("rb") as handle:
                data = handle.read(segment.size).decode()
            for seq, line in enumerate(data.splitlines(), segment.first):
                if seq >= start:
                    yield seq, _entry(line)
