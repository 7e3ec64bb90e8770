"""The rating event: one schema and validator for the producer, the job and batch.

An event is a user, an item, a rating and an event time (integer seconds since the epoch);
its record on the ratings topic is a JSON object with those four fields, written and read in
`streaming.records`, and a ratings file's row is read by `event_from_fields`. A record that
is not a valid event raises `InvalidEventError` with a machine-readable
`Reason`: callers count it and route it (dead-letter topic, load report); it is data, never
a crash, whatever its bytes.

Where the time a record was received is known (the Kafka record's timestamp, or the clock of
a producer about to send it), an event timed more than `EventSettings.max_ahead_s` after it is
rejected: one producer's clock far ahead would otherwise move event time for every user. The
job's Java functions (`streaming/runtime/java`) apply the same rules to the records they read.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, NamedTuple

from streaming.config import EventSettings

__all__ = [
    "FIELDS",
    "Event",
    "InvalidEventError",
    "Reason",
    "check_received",
    "event_from_fields",
    "event_from_mapping",
]

FIELDS = ("user_id", "item_id", "rating", "event_time")
_MAX_ID = 2**63 - 1


class Event(NamedTuple):
    user_id: int
    item_id: int
    rating: float
    event_time: int


class Reason(StrEnum):
    NULL_VALUE = "null_value"
    OVERSIZED = "oversized"
    BAD_ENCODING = "bad_encoding"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ROW = "bad_row"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_ID = "bad_id"
    RATING_NOT_FINITE = "rating_not_finite"
    RATING_OUT_OF_RANGE = "rating_out_of_range"
    BAD_EVENT_TIME = "bad_event_time"
    EVENT_TIME_AHEAD = "event_time_ahead"


class InvalidEventError(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_DETAIL_VALUE_CHARS = 80
"""How much of an offending value a reason's detail quotes."""


def _shown(value: object) -> str:
    """A value for a reason's detail, shortened; never fails (repr of a huge int can)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "?"
    if len(text) <= _DETAIL_VALUE_CHARS:
        return text
    return f"{text[:_DETAIL_VALUE_CHARS]}... ({len(text)} characters)"


def _validate(
    user_id: int,
    item_id: int,
    rating: float,
    event_time: int,
    rules: EventSettings,
    received_s: int | None,
) -> Event:
    for name, value in (("user_id", user_id), ("item_id", item_id)):
        if not 0 <= value <= _MAX_ID:
            raise InvalidEventError(Reason.BAD_ID, f"{name} {_shown(value)} is outside 0..2^63-1")
    if not math.isfinite(rating):
        raise InvalidEventError(Reason.RATING_NOT_FINITE, f"rating is {rating}")
    if not rules.min_rating <= rating <= rules.max_rating:
        raise InvalidEventError(
            Reason.RATING_OUT_OF_RANGE,
            f"rating {rating} is outside {rules.min_rating}..{rules.max_rating}",
        )
    if not 0 <= event_time <= rules.max_event_time:
        hint = (
            " (milliseconds? event_time is in seconds)" if event_time > rules.max_event_time else ""
        )
        raise InvalidEventError(
            Reason.BAD_EVENT_TIME,
            f"event_time {_shown(event_time)} is outside 0..{rules.max_event_time}{hint}",
        )
    event = Event(user_id, item_id, float(rating), event_time)
    return event if received_s is None else check_received(event, rules, received_s)


def check_received(event: Event, rules: EventSettings, received_s: int) -> Event:
    """`event`, unless it is timed more than `max_ahead_s` after `received_s` (seconds)."""
    if event.event_time > max(received_s, 0) + rules.max_ahead_s:
        raise InvalidEventError(
            Reason.EVENT_TIME_AHEAD,
            f"event_time {event.event_time} is more than {rules.max_ahead_s}s after the record "
            f"was received ({received_s}): is the producer's clock right?",
        )
    return event


def _json_int(record: dict[str, Any], name: str) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(
            Reason.WRONG_TYPE, f"{name} must be an integer, got {_shown(value)}"
        )
    return value


def event_from_mapping(
    record: object, rules: EventSettings, received_s: int | None = None
) -> Event:
    """An event from a decoded JSON object (or an application's dict), with JSON's types."""
    if not isinstance(record, dict):
        raise InvalidEventError(
            Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(record).__name__}"
        )
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise InvalidEventError(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    rating = record["rating"]
    if isinstance(rating, bool) or not isinstance(rating, int | float):
        raise InvalidEventError(Reason.WRONG_TYPE, f"rating must be a number, got {_shown(rating)}")
    return _validate(
        _json_int(record, "user_id"),
        _json_int(record, "item_id"),
        _float(rating),
        _json_int(record, "event_time"),
        rules,
        received_s,
    )


def _float(rating: int | float) -> float:
    """A rating as a float; an integer too large for one is out of any rating range."""
    try:
        return float(rating)
    except OverflowError:
        raise InvalidEventError(
            Reason.RATING_OUT_OF_RANGE, f"rating {_shown(rating)} is too large for a number"
        ) from None


def event_from_fields(
    user_id: str,
    item_id: str,
    rating: str,
    event_time: str,
    rules: EventSettings,
    received_s: int | None = None,
) -> Event:
    """An event from the text columns of a ratings file (MovieLens csv, u.data, .dat)."""
    values: list[int | float] = []
    for name, text, kind in (
        ("user_id", user_id, int),
        ("item_id", item_id, int),
        ("rating", rating, float),
        ("event_time", event_time, int),
    ):
        try:
            values.append(kind(text))
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise InvalidEventError(
                Reason.WRONG_TYPE, f"{name} must be {expected}, got {_shown(text)}"
            ) from None
    user, item, score, when = values
    return _validate(int(user), int(item), float(score), int(when), rules, received_s)
