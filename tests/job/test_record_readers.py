"""The job's Java readers of ratings records, against the Python validator.

The compact form the JVM reads without a Python call: exactly what the producer writes, read
to the same fields as the Python validator reads; any other record is left to the validator.
The watermark's reader (`AcceptedEventTime`) accepts only records the validator accepts, with
the same event time, whatever their bytes: a rejected record never moves event time."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyflink.java_gateway import get_gateway

from streaming.config import EventSettings, Settings
from streaming.core.events import Event, InvalidEventError
from streaming.job.environment import execution_environment
from streaming.job.pipeline import _java_rules
from streaming.records import event_from_json, event_to_json
from tests.nasty_records import NOW_S, NastyRecord, nasty_records

pytestmark = pytest.mark.integration

MAX_BYTES = 200
WIDE = EventSettings(
    min_rating=-1e30, max_rating=1e30, max_event_time=10**12, max_record_bytes=MAX_BYTES,
    max_ahead_s=10**12,
)  # fmt: skip
Read = tuple[tuple[int, int, float, int] | None, int | None]
"""What the JVM makes of a record: its compact fields, and its accepted event time."""
Reader = Callable[[EventSettings, list[NastyRecord]], list[Read]]


def _seconds(received_ms: int) -> int:
    """A broker timestamp as the job's ratings source reads it (`RatingRecords`)."""
    return max(received_ms // 1000, 0)


@pytest.fixture(scope="module")
def read_in_java(installed: Settings) -> Reader:
    """Read records with the job's Java readers under `rules`, called one by one through the
    PyFlink gateway (the job calls the same classes on the same arguments)."""
    execution_environment(installed)  # puts the job's jars on the gateway's class path
    functions = get_gateway().jvm.io.walkstream

    def read(rules: EventSettings, records: list[NastyRecord]) -> list[Read]:
        compact_event = functions.CompactEvent(_java_rules(rules))
        accepted_time = functions.AcceptedEventTime(_java_rules(rules))
        reads: list[Read] = []
        for key, value, received_ms in records:
            raw = None if value is None else bytearray(value)
            row = compact_event.eval(key, raw, _seconds(received_ms))
            fields = None if row is None else tuple(row.getField(i) for i in range(4))
            time = accepted_time.read(key, raw, _seconds(received_ms))
            reads.append((fields, None if time is None else int(time)))  # type: ignore[arg-type]
        return reads

    return read


def compact_event(
    read_in_java: Reader, values: list[str], keys: list[str]
) -> list[tuple[int, int, float, int] | None]:
    """The compact reader's fields of each value with its key, received now (wide rules)."""
    records = [NastyRecord(k, v.encode(), NOW_S * 1000) for k, v in zip(keys, values, strict=True)]
    return [compact for compact, _ in read_in_java(WIDE, records)]


def _random_event(rng: random.Random) -> Event:
    return Event(
        rng.randrange(10 ** rng.randrange(1, 19)),
        rng.randrange(10 ** rng.randrange(1, 19)),
        rng.choice([0.0, 0.5, 3.5, 4.0, 5.0, rng.uniform(-1e6, 1e6), 1e-7, 2.5e21, -0.0]),
        rng.randrange(10 ** rng.randrange(1, 13)),
    )


def test_everything_the_producer_writes_is_read_to_its_fields(read_in_java: Reader) -> None:
    rng = random.Random(3)
    events = [_random_event(rng) for _ in range(2_000)]
    records = [event_to_json(event).decode() for event in events]
    reads = compact_event(read_in_java, records, [str(event.user_id) for event in events])
    for event, record, read in zip(events, records, reads, strict=True):
        assert read is not None, record
        assert tuple(read) == (event.user_id, event.item_id, event.rating, event.event_time)
        # the validator, which judges every other record, reads the same fields
        assert event_from_json(record.encode(), WIDE) == event


@pytest.mark.parametrize("oversized", [False, True])
def test_a_compact_record_longer_than_the_limit_is_left_to_the_validator(
    read_in_java: Reader, oversized: bool
) -> None:
    record = '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}'
    padded = record.replace("4.0", "4." + "0" * (MAX_BYTES - len(record) + 1 + oversized))
    assert len(padded) == MAX_BYTES + oversized
    (read,) = compact_event(read_in_java, [padded], ["1"])
    assert (read is None) == oversized


NEAR_MISSES = [
    '{"user_id":01,"item_id":2,"rating":4.0,"event_time":5}',  # leading zero
    '{"user_id":-1,"item_id":2,"rating":4.0,"event_time":5}',
    '{"user_id":1234567890123456789,"item_id":2,"rating":4.0,"event_time":5}',  # 19 digits
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":1234567890123}',  # 13 digits
    '{"user_id":1, "item_id":2,"rating":4.0,"event_time":5}',
    '{"item_id":2,"user_id":1,"rating":4.0,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5,"x":1}',
    '{"user_id":1,"item_id":2,"rating":"4.0","event_time":5}',
    '{"user_id":1,"item_id":2,"rating":4.,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":.5,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":1e,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":01,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":+1,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":NaN,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":1e400,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5.0}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}\n',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5} ',
    ' {"user_id":1,"item_id":2,"rating":4.0,"event_time":5}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5',
    '{"user_id":1,"item_id":2,"rating":4.0}',
    '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}}',
    "",
]


def test_anything_else_is_left_to_the_validator(read_in_java: Reader) -> None:
    control = '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}'  # the test can fail
    reads = compact_event(read_in_java, [control, *NEAR_MISSES], ["1"] * (len(NEAR_MISSES) + 1))
    assert tuple(reads[0]) == (1, 2, 4.0, 5)
    assert dict(zip(NEAR_MISSES, reads[1:], strict=True)) == dict.fromkeys(NEAR_MISSES)


def test_a_compact_record_the_rules_reject_is_left_to_the_validator(read_in_java: Reader) -> None:
    """Another user's key, a rating out of range, a time too far past the broker's: each is
    a dead letter with its reason, which only the validator names."""
    rules = EventSettings(max_ahead_s=60)
    record = '{"user_id":1,"item_id":2,"rating":%s,"event_time":%d}'
    records = [
        NastyRecord("1", (record % ("4.0", NOW_S + 60)).encode(), NOW_S * 1000 + 999),  # control
        NastyRecord("2", (record % ("4.0", NOW_S)).encode(), NOW_S * 1000),
        NastyRecord(None, (record % ("4.0", NOW_S)).encode(), NOW_S * 1000),
        NastyRecord("1", (record % ("5.5", NOW_S)).encode(), NOW_S * 1000),
        NastyRecord("1", (record % ("4.0", NOW_S + 61)).encode(), NOW_S * 1000 + 999),
        NastyRecord("1", (record % ("4.0", 61)).encode(), -1),
    ]
    reads = read_in_java(rules, records)
    assert [(compact is not None, time) for compact, time in reads] == [
        (True, NOW_S + 60),
        *[(False, None)] * 5,
    ]


FUZZ_RULES = EventSettings(max_record_bytes=8192)


def _validator_time(record: NastyRecord, rules: EventSettings) -> int | None:
    """The event time of a record the job's Python validator accepts, else None."""
    try:
        event = event_from_json(record.value, rules, _seconds(record.received_ms))
    except InvalidEventError:
        return None
    return event.event_time if record.key == str(event.user_id) else None


def _rare_form(value: bytes | None) -> bool:
    """JSON the strict reader leaves to the validator: deep nesting, an escaped key, a field
    given twice."""
    assert value is not None
    twice = any(value.count(b'"%s"' % field.encode()) > 1 for field in Event._fields)
    return b"[" * 60 in value or b"\\u" in value or twice


def test_the_watermark_follows_only_records_the_validator_accepts(read_in_java: Reader) -> None:
    """100,000 careless and hostile records: every one the JVM lets move event time, the
    validator accepts with that event time; none raises in either."""
    records = nasty_records(random.Random(21), 100_000)
    reads = read_in_java(FUZZ_RULES, records)
    accepted = 0
    for record, (compact, time) in zip(records, reads, strict=True):
        expected = _validator_time(record, FUZZ_RULES)
        if time is not None:
            assert time == expected, record
            accepted += 1
        elif expected is not None:
            # valid, but in a form the JVM leaves to the other records' times
            assert _rare_form(record.value), record
        if compact is not None:
            assert expected is not None, record
            assert event_from_json(record.value, FUZZ_RULES) == Event(*compact), record
    assert accepted > 10_000


def test_valid_events_in_any_common_json_form_move_event_time(read_in_java: Reader) -> None:
    rng = random.Random(8)
    forms = [(",", ":"), (", ", ": "), (",", ": ")]
    records = []
    for n in range(600):
        fields = list(_random_event(rng)._replace(event_time=n, rating=4.0)._asdict().items())
        rng.shuffle(fields)
        if n % 2:
            fields.append(("source", {"app": ["web", n], "note": "é\n"}))
        value = json.dumps(dict(fields), separators=forms[n % 3]).encode()
        records.append(NastyRecord(str(dict(fields)["user_id"]), value, NOW_S * 1000))
    reads = read_in_java(FUZZ_RULES, records)
    assert [time for _, time in reads] == list(range(600))


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_EVENTISH = st.fixed_dictionaries(
    {name: st.integers(-5, 2**64) | _JSONISH for name in ("user_id", "item_id", "event_time")}
    | {"rating": st.floats() | st.integers() | _JSONISH},
    optional={"extra": _JSONISH},
)


@settings(max_examples=300)
@given(
    value=st.one_of(
        st.binary(max_size=200),
        _EVENTISH.map(lambda record: json.dumps(record).encode()),
        _JSONISH.map(lambda record: json.dumps(record).encode()),
    ),
    key=st.one_of(st.none(), st.text(max_size=4), st.integers(0, 50).map(str)),
    received_ms=st.integers(-(2**40), 2**45),
)
def test_the_watermark_reader_agrees_with_the_validator_on_any_record(
    read_in_java: Reader,
    value: bytes,
    key: str | None,
    received_ms: int,
) -> None:
    record = NastyRecord(key, value, received_ms)
    [(_, time)] = read_in_java(FUZZ_RULES, [record])
    assert time is None or time == _validator_time(record, FUZZ_RULES)
