import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.config import EventSettings
from streaming.core.events import (
    Event,
    InvalidEventError,
    Reason,
    event_from_fields,
    event_from_mapping,
)
from streaming.records import event_from_json, event_to_json

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


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.NULL_VALUE),
        ('{"user_id":5,"item_id":7,"rating":1' + "0" * 400 + ',"event_time":5}', None),
        (json.dumps({**GOOD, "rating": 10**400}), Reason.RATING_OUT_OF_RANGE),
        (json.dumps({**GOOD, "rating": -(10**400)}), Reason.RATING_OUT_OF_RANGE),
        (json.dumps({**GOOD, "user_id": 2**64}), Reason.BAD_ID),
        (json.dumps({**GOOD, "rating": 1e400}), Reason.RATING_NOT_FINITE),
        ('{"user_id":5,"item_id":7,"rating":4,"event_time":' + "9" * 5000 + "}", Reason.BAD_JSON),
    ],
)
def test_tombstones_and_numbers_of_any_size_are_rejected_with_a_reason(
    raw: str | None, reason: Reason | None
) -> None:
    rules = EventSettings(max_record_bytes=10_000)
    with pytest.raises(InvalidEventError) as raised:
        event_from_json(raw, rules)
    assert reason is None or raised.value.reason == reason
    assert len(raised.value.detail) < 300  # a detail quotes a value, never all of it


def test_an_event_far_ahead_of_its_receipt_is_rejected() -> None:
    rules = EventSettings(max_ahead_s=60)
    record = json.dumps({**GOOD, "event_time": 1_000 + 60})
    assert event_from_json(record, rules, received_s=1_000).event_time == 1_060
    with pytest.raises(InvalidEventError) as raised:
        event_from_json(record, rules, received_s=999)
    assert raised.value.reason == Reason.EVENT_TIME_AHEAD
    with pytest.raises(InvalidEventError):
        event_from_fields("1", "2", "4.0", "61", rules, received_s=0)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**80)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "user_id": _JSON_VALUES,
        "item_id": _JSON_VALUES,
        "rating": _JSON_VALUES,
        "event_time": _JSON_VALUES,
        "extra": _JSON_VALUES,
    },
)


def _judged(parse: Callable[[], Event]) -> Event | None:
    """The event, or None if rejected with a reason; anything else fails the test."""
    try:
        return parse()
    except InvalidEventError as error:
        rejected = error
    assert isinstance(rejected.reason, Reason)
    assert rejected.detail
    return None


@settings(max_examples=500)
@given(st.binary(max_size=2_000), st.integers(-(2**40), 2**40))
def test_any_bytes_are_an_event_or_a_reason(raw: bytes, received_s: int) -> None:
    _judged(lambda: event_from_json(raw, RULES, received_s))


@settings(max_examples=500)
@given(_RECORDS, st.integers(0, 2**40))
def test_any_json_object_is_an_event_or_a_reason(record: dict[str, object], received: int) -> None:
    raw = json.dumps(record)
    event = _judged(lambda: event_from_json(raw, EventSettings(max_record_bytes=10**6), received))
    if event is not None:  # what it accepts is in range, and read as written
        assert 0 <= event.user_id < 2**63
        assert 0 <= event.item_id < 2**63
        assert 0.0 <= event.rating <= 5.0
        assert 0 <= event.event_time <= received + RULES.max_ahead_s
        assert event.user_id == record["user_id"]
        assert event.event_time == record["event_time"]
    assert _judged(lambda: event_from_mapping(record, RULES, received)) in (None, event)


@settings(max_examples=300)
@given(st.lists(st.text(max_size=30), min_size=4, max_size=4))
def test_any_text_columns_are_an_event_or_a_reason(columns: list[str]) -> None:
    _judged(lambda: event_from_fields(*columns, RULES))
