"""Rating files (MovieLens csv, u.data, ratings.dat, JSON lines) as events, with a load report.

Every row goes through `streaming.core.events`, so a file is validated exactly like the stream.
A bad row is data, not a crash: it is counted under its `Reason` with its 1-based line number,
and every valid row around it is kept. A file with no valid row at all is the wrong file or the
wrong format, so `load_events` raises `DataError` for it, saying why its rows were rejected.
"""

from __future__ import annotations

import array
import csv
import gzip
import io
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt

from streaming.config import EventSettings
from streaming.core.events import Event, InvalidEventError, Reason, event_from_fields
from streaming.errors import DataError
from streaming.records import event_from_json

__all__ = [
    "FORMATS",
    "EventColumns",
    "Format",
    "LoadReport",
    "Rejected",
    "iter_events",
    "load_events",
]

Format = Literal["csv", "udata", "dat", "jsonl"]
FORMATS: tuple[Format, ...] = get_args(Format)

_SEPARATORS: dict[str, str] = {"csv": ",", "udata": "\t", "dat": "::"}
_TEXT_LIMIT = 200
_MAX_EXAMPLES = 10
_DETAIL_LIMIT = 100
_PROGRESS_EVERY = 1_000_000
_BOM = "\ufeff"


@dataclass(frozen=True)
class Rejected:
    """One row that is not a valid event; `text` is the raw line, cut to 200 characters."""

    line_no: int
    reason: Reason
    detail: str
    text: str


class EventColumns(NamedTuple):
    """Accepted events column-wise: what training and the batch job consume."""

    user_id: npt.NDArray[np.int64]
    item_id: npt.NDArray[np.int64]
    rating: npt.NDArray[np.float64]
    event_time: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.user_id.shape[0])


@dataclass
class LoadReport:
    """What a load saw, so a bad file is visible instead of silently shrinking the data."""

    path: Path
    format: Format
    rows: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[Rejected] = field(default_factory=list)
    header: str | None = None

    def add_rejected(self, rejected: Rejected) -> None:
        self.rejected[rejected.reason.value] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(rejected)

    def summary(self) -> str:
        total = sum(self.rejected.values())
        lines = [
            f"{self.path} ({self.format}): {self.rows} rows, "
            f"{self.accepted} accepted, {total} rejected"
        ]
        if self.header is not None:
            lines.append(f"  skipped header line 1: {self.header!r}")
        lines.extend(f"  {reason}: {count}" for reason, count in self.rejected.most_common())
        if self.examples:
            lines.append(f"  first {len(self.examples)} rejected:")
            lines.extend(
                f"    line {r.line_no}: {r.reason.value}: {r.detail} | {r.text!r}"
                for r in self.examples
            )
        return "\n".join(lines)

    def nothing_accepted(self) -> str:
        """One line on why a load accepted no event: the counts by reason and the first row."""
        if self.rows == 0:
            what = "has only a header line" if self.header is not None else "is empty"
            return f"ratings file {self.path} {what}: give a file with ratings in it"
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in self.rejected.most_common())
        first = self.examples[0]
        detail = " ".join(first.detail.split())[:_DETAIL_LIMIT]
        return (
            f"ratings file {self.path}: all {self.rows:,} rows rejected as {self.format} "
            f"({reasons}; line {first.line_no}: {detail}): check --format "
            f"({', '.join(FORMATS)}) and that it is a ratings file"
        )


def _check(path: str | os.PathLike[str], fmt: str) -> Path:
    """Fail before reading, with a message that says what to do."""
    if fmt not in FORMATS:
        raise DataError(f"unknown ratings format {fmt!r}: use one of {', '.join(FORMATS)}")
    resolved = Path(path)
    if not resolved.is_file():
        raise DataError(
            f"ratings file {resolved} does not exist (or is not a file): check the path, "
            "or download the MovieLens data set first"
        )
    return resolved


def _is_header(fields: list[str]) -> bool:
    """A first line with no numeric field is a header; one with any number is a (bad) row."""
    for text in fields:
        try:
            float(text)
        except ValueError:
            continue
        return False
    return True


def _split_fields(text: str, sep: str) -> list[str]:
    if sep == "," and '"' in text:
        try:
            return next(csv.reader([text]), [])
        except csv.Error as exc:
            raise InvalidEventError(Reason.BAD_ROW, f"unparseable csv: {exc}") from None
    return text.split(sep)


class _Reader:
    """Streams one file line by line; a line longer than the record limit is never held whole."""

    def __init__(self, path: Path, fmt: Format, rules: EventSettings) -> None:
        self.path = path
        self.fmt = fmt
        self.rules = rules
        self.header: str | None = None

    def _open(self) -> io.BufferedIOBase:
        try:
            if self.path.name.lower().endswith(".gz"):
                return gzip.open(self.path, "rb")
            return open(self.path, "rb")
        except OSError as exc:
            raise DataError(f"cannot read ratings file {self.path}: {exc.strerror or exc}") from exc

    def __iter__(self) -> Iterator[Event | Rejected]:
        try:
            with self._open() as handle:
                yield from self._rows(handle)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(
                f"{self.path} is not a complete gzip file ({exc}): re-download it, "
                "or check it with `gzip -t`"
            ) from exc

    def _rows(self, handle: io.BufferedIOBase) -> Iterator[Event | Rejected]:
        rules = self.rules
        max_bytes = rules.max_record_bytes
        limit = max_bytes + 2  # room for "\r\n"
        readline = handle.readline
        jsonl = self.fmt == "jsonl"
        sep = _SEPARATORS.get(self.fmt, "")
        line_no = 0
        while True:
            raw = readline(limit)
            if not raw:
                return
            line_no += 1
            if raw[-1:] == b"\n":
                raw = raw[:-2] if raw[-2:-1] == b"\r" else raw[:-1]
            elif len(raw) == limit:
                size = _skip_rest_of_line(readline, raw)
                detail = f"line has {size} bytes, more than {max_bytes}"
                yield _rejected(line_no, Reason.OVERSIZED, detail, raw)
                continue
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if len(raw) > max_bytes:
                detail = f"line has {len(raw)} bytes, more than {max_bytes}"
                yield _rejected(line_no, Reason.OVERSIZED, detail, raw)
                continue
            if not raw.strip():
                yield _rejected(line_no, Reason.BAD_ROW, "blank line", raw)
                continue
            try:
                if jsonl:
                    yield event_from_json(raw, rules)
                    continue
                try:
                    text = raw.decode()
                except UnicodeDecodeError as exc:
                    raise InvalidEventError(
                        Reason.BAD_ENCODING, f"not UTF-8: {exc.reason}"
                    ) from None
                fields = _split_fields(text, sep)
                if line_no == 1 and self.fmt == "csv" and _is_header(fields):
                    self.header = text
                    continue
                if len(fields) != 4:
                    raise InvalidEventError(
                        Reason.BAD_ROW, f"expected 4 fields separated by {sep!r}, got {len(fields)}"
                    )
                user, item, rating, when = fields
                yield event_from_fields(user, item, rating, when, rules)
            except InvalidEventError as exc:
                yield _rejected(line_no, exc.reason, exc.detail, raw)


def _skip_rest_of_line(readline: Callable[[int], bytes], head: bytes) -> int:
    """Read past an oversized line in small pieces; its length without the line ending."""
    size, last, chunk = len(head), head, head
    while chunk[-1:] != b"\n":
        last, chunk = chunk, readline(65536)
        if not chunk:
            return size
        size += len(chunk)
    before = chunk[-2:-1] or last[-1:]
    return size - (2 if before == b"\r" else 1)


def _rejected(line_no: int, reason: Reason, detail: str, raw: bytes) -> Rejected:
    text = raw[: _TEXT_LIMIT * 4].decode(errors="replace")[:_TEXT_LIMIT]
    return Rejected(line_no, reason, detail, text)


def iter_events(
    path: str | os.PathLike[str], fmt: Format, rules: EventSettings
) -> Iterator[Event | Rejected]:
    """Events and rejections in file order, in bounded memory (for the Kafka producer).

    The path and format are checked now; the file is opened on the first `next()`.
    """
    return iter(_Reader(_check(path, fmt), fmt, rules))


def load_events(
    path: str | os.PathLike[str],
    fmt: Format,
    rules: EventSettings,
    progress: Callable[[int], None] | None = None,
) -> tuple[EventColumns, LoadReport]:
    """All accepted events as columns, plus the report of what was rejected and why.

    Values go straight into typed `array.array`s (8 bytes a value, no Python objects kept), so a
    file of tens of millions of rows costs 32 bytes a row; numpy then wraps them without a copy.
    `progress` gets the number of rows read every million rows and once at the end.
    A file without one valid event raises `DataError`: nothing downstream can use it.
    """
    reader = _Reader(_check(path, fmt), fmt, rules)
    report = LoadReport(path=reader.path, format=fmt)
    users, items, times = array.array("q"), array.array("q"), array.array("q")
    ratings = array.array("d")
    add_user, add_item, add_rating, add_time = (
        users.append,
        items.append,
        ratings.append,
        times.append,
    )
    rows = 0
    next_progress = _PROGRESS_EVERY
    for row in reader:
        rows += 1
        if isinstance(row, Event):
            user, item, rating, when = row
            add_user(user)
            add_item(item)
            add_rating(rating)
            add_time(when)
        else:
            report.add_rejected(row)
        if rows == next_progress:
            next_progress += _PROGRESS_EVERY
            if progress is not None:
                progress(rows)
    if progress is not None:
        progress(rows)
    report.rows = rows
    report.accepted = len(users)
    report.header = reader.header
    if report.accepted == 0:
        raise DataError(report.nothing_accepted())
    columns = EventColumns(
        np.frombuffer(users, dtype=np.int64),
        np.frombuffer(items, dtype=np.int64),
        np.frombuffer(ratings, dtype=np.float64),
        np.frombuffer(times, dtype=np.int64),
    )
    return columns, report
