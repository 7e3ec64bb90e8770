"""What the job writes to each output topic: one JSON object per record (schemas in
docs/streaming-job.md)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping

from streaming.core.events import Event

__all__ = [
    "DEAD_LETTER_VALUE_BYTES",
    "count_update",
    "dead_letter",
    "late_event",
    "user_sequence_sample",
    "walk_sample",
]


def _dumps(record: Mapping[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


DEAD_LETTER_VALUE_BYTES = 16_384
"""A dead letter carries at most this much of the rejected value (and of its key), so it stays
far below any broker's record limit however large the record was."""


def dead_letter(
    reason: str, detail: str, key: str | None, partition: int, offset: int, raw: bytes | None
) -> str:
    """A rejected ratings record, with where it came from, so it can be found and replayed.

    The value is kept whole up to `DEAD_LETTER_VALUE_BYTES`, else cut there and marked
    `"truncated": true`, with `value_bytes` its full size; `value` repeats it as text when it
    is UTF-8. A tombstone (no value) has `value_base64` null."""
    kept = None if raw is None else raw[:DEAD_LETTER_VALUE_BYTES]
    record: dict[str, object] = {
        "reason": reason,
        "detail": detail,
        "key": None if key is None else key[:DEAD_LETTER_VALUE_BYTES],
        "partition": partition,
        "offset": offset,
        "value_base64": None if kept is None else base64.b64encode(kept).decode(),
        "value_bytes": None if raw is None else len(raw),
        "truncated": raw is not None and len(raw) > DEAD_LETTER_VALUE_BYTES,
    }
    if kept is not None:
        with contextlib.suppress(UnicodeDecodeError):  # not text: value_base64 carries it
            record["value"] = kept.decode("utf-8")
    return _dumps(record)


def late_event(event: Event, partition: int, offset: int, watermark: int) -> str:
    """A valid high rating that arrived at or behind the watermark (event time, seconds)."""
    return _dumps(
        {**event._asdict(), "partition": partition, "offset": offset, "watermark": watermark}
    )


def count_update(src: int, dst: int, count: int) -> str:
    return f"{src} {dst} {count}"


def walk_sample(path: tuple[int, ...], newest_event_time: int) -> str:
    """A finished walk for the trainer, with the newest event time that caused it."""
    return _dumps({"kind": "walk", "items": list(path), "newest_event_time": newest_event_time})


def user_sequence_sample(items: list[int], newest_event_time: int) -> str:
    """A stretch of one user's ordered high ratings (Item2vec) for the trainer."""
    return _dumps({"kind": "sequence", "items": items, "newest_event_time": newest_event_time})
