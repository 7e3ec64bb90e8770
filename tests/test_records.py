"""Each topic's record format: what its writer writes, its parser gives back.

For the formats Flink SQL writes (transition batches, items), the parser is tested on the
exact string the SQL expression builds; the job's integration tests run the SQL itself."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streaming.producer
from streaming.config import EventSettings
from streaming.core.events import Event
from streaming.core.walks import Walk
from streaming.records import (
    DEAD_LETTER_VALUE_BYTES,
    HOP_BATCH_SQL,
    HOP_ONE_SQL,
    HOP_SHARD_SQL,
    ITEM_STAGE,
    MALFORMED,
    SIGHTING_SQL,
    TRANSITION_BATCH_SQL,
    TRANSITION_SAMPLE_SQL,
    USER_ITEMS_SQL,
    DeadLetter,
    LateEvent,
    Sample,
    Sighting,
    UserItems,
    count_update,
    dead_letter,
    decode_batches,
    encode_batch,
    event_from_json,
    event_to_json,
    late_event,
    parse_transitions,
    read_count_update,
    read_dead_letter,
    read_late_event,
    read_sample,
    read_sighting,
    read_user_items,
    read_walk_work,
    transition_sample,
    user_items,
    walk_sample,
    walk_task_holder,
    walk_work,
)

WIDE = EventSettings(
    min_rating=-1e30, max_rating=1e30, max_event_time=10**12, max_record_bytes=200,
    max_ahead_s=10**12,
)  # fmt: skip


def _concatenation(sql: str, row: dict[str, int | str]) -> str:
    """What Flink SQL makes of a `||` concatenation of string literals, STRING columns,
    CAST(column AS STRING) and CASE WHEN column = N THEN 'a' ELSE 'b' END, for one row."""
    parts = []
    for part in sql.split(" || "):
        cast = re.fullmatch(r"CAST\((\w+) AS STRING\)", part)
        case = re.fullmatch(r"CASE WHEN (\w+) = (\d+) THEN '(\w*)' ELSE '(\w*)' END", part)
        if re.fullmatch(r"\w+", part):
            parts.append(str(row[part]))
        elif cast:
            parts.append(str(row[cast[1]]))
        elif case:
            parts.append(case[3] if row[case[1]] == int(case[2]) else case[4])
        else:
            assert re.fullmatch(r"'([^']|'')*'", part), part
            parts.append(part[1:-1].replace("''", "'"))
    return "".join(parts)


def _events(n: int) -> list[Event]:
    rng = random.Random(5)
    ratings = [0.0, -0.0, 0.5, 3.5, 5.0, 1e-7, 2.5e21, 1 / 3]
    return [
        Event(
            rng.randrange(10 ** rng.randrange(1, 19)),
            rng.randrange(10 ** rng.randrange(1, 19)),
            rng.choice([*ratings, rng.uniform(-1e6, 1e6)]),
            rng.randrange(10 ** rng.randrange(1, 13)),
        )
        for _ in range(n)
    ]


def test_the_producer_sends_the_compact_form() -> None:
    assert streaming.producer.event_to_json is event_to_json


def test_ratings_compact_form_round_trips_and_is_plain_compact_json() -> None:
    for event in _events(2_000):
        raw = event_to_json(event)
        assert raw == json.dumps(event._asdict(), separators=(",", ":")).encode()
        assert event_from_json(raw, WIDE) == event


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("7", b'{"user_id":7}'),
        (None, None),  # a tombstone without a key
        ("8", b"\xff\xfe not UTF-8"),
        ("9", b"x" * (DEAD_LETTER_VALUE_BYTES + 5)),
    ],
)
def test_dead_letters_round_trip(key: str | None, raw: bytes | None) -> None:
    record = dead_letter("bad_json", "detail", key, 3, 41, raw)
    truncated = raw is not None and len(raw) > DEAD_LETTER_VALUE_BYTES
    assert read_dead_letter(record) == DeadLetter(
        "bad_json",
        "detail",
        key,
        3,
        41,
        None if raw is None else raw[:DEAD_LETTER_VALUE_BYTES],
        None if raw is None else len(raw),
        truncated,
    )
    fields = json.loads(record)
    assert ("value" in fields) == (raw is not None and not raw.startswith(b"\xff"))


def test_late_events_round_trip() -> None:
    event = Event(1, 2, 4.5, 1_700_000_000)
    assert read_late_event(late_event(event, 2, 99, 1_700_000_060)) == LateEvent(
        event, 2, 99, 1_700_000_060
    )


def test_transition_batches_are_read_as_the_sql_writes_them() -> None:
    aggregate = re.fullmatch(r"ARRAY_JOIN\(ARRAY_AGG\((.*)\), ','\)", TRANSITION_BATCH_SQL)
    assert aggregate is not None
    rows = [(5, 7, 100), (9, 2, 101), (5, 8, 102), (5, 7, 2**63 - 1)]
    batch = ",".join(
        _concatenation(aggregate[1], {"src": src, "dst": dst, "event_time": time})
        for src, dst, time in rows
    )
    assert batch == "5 7 100,9 2 101,5 8 102,5 7 9223372036854775807"
    assert parse_transitions(batch) == {
        5: [(7, 100), (8, 102), (7, 2**63 - 1)],
        9: [(2, 101)],
    }
    assert parse_transitions("1 2 3") == {1: [(2, 3)]}


def test_walk_hops_round_trip_one_and_batched_as_the_sql_joins_them() -> None:
    walks = {7: [Walk((1, 7), 10), Walk((7,), 0)], 15: [Walk((2, 15), 3)]}
    more = {7: [Walk((4, 5, 7), 2)]}
    first, second = encode_batch(3, walks), encode_batch(3, more)
    assert json.loads(first)["shard"] == 3  # what HOP_SHARD_SQL reads
    assert HOP_SHARD_SQL == "JSON_VALUE(v, '$.shard')"
    # HOP_ONE_SQL and HOP_BATCH_SQL: "[" message(s) joined by "," "]"
    assert HOP_ONE_SQL == "'[' || v || ']'"
    assert HOP_BATCH_SQL == "'[' || ARRAY_JOIN(ARRAY_AGG(v), ',') || ']'"
    assert decode_batches(f"[{first}]") == walks
    assert decode_batches(f"[{first},{second}]") == {7: [*walks[7], *more[7]], 15: walks[15]}


def test_samples_of_both_kinds_round_trip_and_transitions_as_the_sql_writes_them() -> None:
    assert read_sample(walk_sample((3, 1, 4), 17)) == Sample("walk", [3, 1, 4], 17)
    assert read_sample(b'{"kind":"walk","items":[1,2]}') == Sample("walk", [1, 2], 0)
    row = {"user_id": 12, "src": 2, "dst": 7, "event_time": 18}
    written = _concatenation(TRANSITION_SAMPLE_SQL, row)
    assert written == transition_sample(12, 2, 7, 18)
    assert read_sample(written.encode()) == Sample("transition", [2, 7], 18, 12)


@given(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=20), st.integers(0, 2**40))
def test_a_walk_sample_is_the_json_of_its_fields(path: list[int], newest: int) -> None:
    fields = {"kind": "walk", "items": path, "newest_event_time": newest}
    assert walk_sample(tuple(path), newest) == json.dumps(
        fields, separators=(",", ":"), sort_keys=True
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"items":5}',
        b'{"items":["x"]}',
        b"{}",
        b'{"kind":"transition","items":[1,2,3],"user":1}',
        b'{"kind":"transition","items":[1,2]}',
        b'{"kind":"sequence","items":[1,2]}',
    ],
)
def test_a_malformed_sample_raises_what_the_trainer_counts(raw: bytes) -> None:
    with pytest.raises(MALFORMED):
        read_sample(raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["walk", "transition", "sequence"]) | _JSON,
        "items": st.lists(st.integers() | st.floats() | st.text(max_size=3), max_size=4) | _JSON,
        "newest_event_time": st.integers() | st.floats() | _JSON,
        "user": st.integers() | st.floats() | _JSON,
        "item_id": st.integers() | st.floats() | _JSON,
        "first": st.booleans() | _JSON,
        "neighbours": st.dictionaries(st.text(max_size=4), st.integers() | st.floats()) | _JSON,
    },
)


def _read_or_reason(read: Callable[[bytes], object], raw: bytes) -> object | None:
    try:
        return read(raw)
    except MALFORMED:
        return None


@settings(max_examples=400)
@given(st.binary(max_size=300) | _FIELDS.map(lambda r: json.dumps(r).encode()))
def test_any_samples_or_items_record_is_read_or_refused_with_what_the_trainer_counts(
    raw: bytes,
) -> None:
    sample = _read_or_reason(read_sample, raw)
    if sample is not None:
        assert isinstance(sample, Sample)
        assert all(type(item) is int for item in sample.items)
        assert sample.kind in ("walk", "transition")
        assert (sample.user is not None) == (sample.kind == "transition")
    try:
        sighting = read_sighting(raw)
    except MALFORMED:
        return
    assert type(sighting.item) is int
    assert type(sighting.first) is bool
    assert all(type(n) is int and type(c) is int for n, c in sighting.neighbours.items())


def test_a_deeply_nested_record_is_refused_not_a_crash() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    assert _read_or_reason(read_sample, nested) is None
    assert _read_or_reason(read_sighting, nested) is None
    assert _read_or_reason(read_user_items, nested) is None


def test_users_records_are_read_as_the_sql_writes_them() -> None:
    row: dict[str, int | str] = {"user_id": 12, "kept": 9, "items": "5,3,8", "event_time": 40}
    written = _concatenation(USER_ITEMS_SQL, row)
    assert written == user_items(12, 9, [5, 3, 8], 40)
    assert written.startswith('{"user":12,')  # UserKey.java reads the key from there
    assert read_user_items(written.encode()) == UserItems(12, 9, [5, 3, 8], 40)
    assert read_user_items(user_items(-4, 1, [0], 0)) == UserItems(-4, 1, [0], 0)
    for raw in (
        b"{}",
        b'{"user":1,"kept":1,"items":[1,2],"event_time":3}',
        b'{"user":1,"kept":2,"items":[1,-2],"event_time":3}',
        b'{"user":1,"kept":2,"items":{"a":1},"event_time":3}',
    ):
        with pytest.raises(MALFORMED):
            read_user_items(raw)


_USER_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "user": st.integers() | st.floats() | _JSON,
        "kept": st.integers() | st.floats() | _JSON,
        "items": st.lists(st.integers() | st.floats() | st.text(max_size=3), max_size=4) | _JSON,
        "event_time": st.integers() | st.floats() | _JSON,
    },
)


@settings(max_examples=400)
@given(st.binary(max_size=300) | _USER_FIELDS.map(lambda r: json.dumps(r).encode()))
def test_any_users_record_is_read_or_refused_with_what_the_trainer_counts(raw: bytes) -> None:
    record = _read_or_reason(read_user_items, raw)
    if record is not None:
        assert isinstance(record, UserItems)
        assert all(type(value) is int for value in (record.user, record.kept, record.event_time))
        assert all(type(item) is int and item >= 0 for item in record.items)
        assert record.kept >= len(record.items)


def test_items_records_are_read_as_the_sql_writes_them() -> None:
    first = _concatenation(SIGHTING_SQL, {"n": 1, "item_id": 3, "neighbour": 7, "times": 2})
    later = _concatenation(SIGHTING_SQL, {"n": 4, "item_id": 12, "neighbour": 5, "times": 1})
    assert first == '{"first":true,"item_id":3,"neighbours":{"7":2}}'
    assert json.loads(later) == {"first": False, "item_id": 12, "neighbours": {"5": 1}}
    assert read_sighting(first.encode()) == Sighting(3, {7: 2}, True)
    assert read_sighting(later) == Sighting(12, {5: 1}, False)
    for raw in (
        b"{}",
        b'{"first":false,"item_id":1,"neighbours":[]}',
        b'{"item_id":1,"neighbours":{"2":1}}',
        b'{"first":1,"item_id":1,"neighbours":{"2":1}}',
    ):
        with pytest.raises(MALFORMED):
            read_sighting(raw)


def test_count_updates_round_trip() -> None:
    assert read_count_update(count_update(4, 9, 12.0, None, ITEM_STAGE)) == (
        4, 9, 12.0, None, "items"
    )  # fmt: skip
    decayed = count_update(4, 9, 0.1 + 2**-40, 1_700_000_000, walk_task_holder(3))
    assert read_count_update(decayed.encode()) == (4, 9, 0.1 + 2**-40, 1_700_000_000, "walks-3")


def test_walk_work_round_trips() -> None:
    work = walk_work({(4, 100): 3, (7, 101): 1}, "4 5 100,7 4 101,4 6 102")
    assert read_walk_work(work) == (
        [(4, 100, 3), (7, 101, 1)],
        {4: [(5, 100), (6, 102)], 7: [(4, 101)]},
        [],
    )
    assert read_walk_work(walk_work({}, "1 2 3")) == ([], {1: [(2, 3)]}, [])
    assert read_walk_work(walk_work({(1, 2): 5}, "")) == ([(1, 2, 5)], {}, [])
    assert read_walk_work(walk_work({}, "", [9, 3])) == ([], {}, [9, 3])
