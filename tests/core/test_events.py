import json

import pytest

from streaming.config import EventSettings
from streaming.core.events import (
    Event,
    InvalidEventError,
    Reason,
    event_from_fields,
    event_from_json,
    event_to_json,
)

RULES = EventSettings()
GOOD = {"user_id": 7, "item_id": 42, "rating": 4.5, "event_time": 1_600_000_000}


def test_json_round_trip() -> None:
    event = event_from_json(json.dumps(GOOD), RULES)
    assert event == Event(7, 42, 4.5, 1_600_000_000)
    assert event_from_json(event_to_json(event), RULES) == event


def test_extra_fields_are_ignored_and_integer_ratings_accepted() -> None:
    record = {**GOOD, "rating": 4, "source": "app"}
    assert event_from_json(json.dumps(record), RULES).rating == 4.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", Reason.BAD_ENCODING),
        ("{not json", Reason.BAD_JSON),
        ("[" * 900, Reason.BAD_JSON),
        ("[1, 2]", Reason.NOT_AN_OBJECT),
        (json.dumps({"user_id": 1, "item_id": 2, "rating": 3}), Reason.MISSING_FIELD),
        (json.dumps({**GOOD, "user_id": "7"}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "item_id": 4.0}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "item_id": True}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "rating": "5"}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "rating": None}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "event_time": 1.5}), Reason.WRONG_TYPE),
        (json.dumps({**GOOD, "user_id": -1}), Reason.BAD_ID),
        (json.dumps({**GOOD, "item_id": 2**64}), Reason.BAD_ID),
        (json.dumps({**GOOD, "rating": float("nan")}), Reason.RATING_NOT_FINITE),
        (json.dumps({**GOOD, "rating": float("inf")}), Reason.RATING_NOT_FINITE),
        (json.dumps({**GOOD, "rating": 5.5}), Reason.RATING_OUT_OF_RANGE),
        (json.dumps({**GOOD, "rating": -0.5}), Reason.RATING_OUT_OF_RANGE),
        (json.dumps({**GOOD, "event_time": -1}), Reason.BAD_EVENT_TIME),
        (json.dumps({**GOOD, "event_time": 1_600_000_000_000}), Reason.BAD_EVENT_TIME),
        (json.dumps({**GOOD, "pad": "x" * 2000}), Reason.OVERSIZED),
    ],
)
def test_invalid_records_name_their_reason(raw: bytes | str, reason: Reason) -> None:
    with pytest.raises(InvalidEventError) as error:
        event_from_json(raw, RULES)
    assert error.value.reason is reason
    assert str(error.value).startswith(f"{reason.value}: ")


def test_milliseconds_get_a_hint() -> None:
    with pytest.raises(InvalidEventError, match="milliseconds"):
        event_from_json(json.dumps({**GOOD, "event_time": 1_600_000_000_000}), RULES)


def test_text_fields() -> None:
    assert event_from_fields("1", "2", "3.5", "100", RULES) == Event(1, 2, 3.5, 100)
    with pytest.raises(InvalidEventError) as error:
        event_from_fields("1", "x", "3.5", "100", RULES)
    assert error.value.reason is Reason.WRONG_TYPE
    with pytest.raises(InvalidEventError) as error:
        event_from_fields("1", "2", "nan", "100", RULES)
    assert error.value.reason is Reason.RATING_NOT_FINITE


def test_rules_come_from_settings() -> None:
    tens = EventSettings(min_rating=1, max_rating=10, high_rating=7)
    assert event_from_json(json.dumps({**GOOD, "rating": 9}), tens).rating == 9.0
    with pytest.raises(ValueError, match="min_rating <= high_rating <= max_rating"):
        EventSettings(high_rating=6)
