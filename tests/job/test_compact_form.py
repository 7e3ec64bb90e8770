"""The compact form the JVM reads without a Python call: exactly what the producer writes, read
to the same fields as the Python validator reads; any other record is left to the validator."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from pyflink.common import Row
from pyflink.table import DataTypes, StreamTableEnvironment

from streaming.config import EventSettings, Settings
from streaming.core.events import Event, event_from_json, event_to_json
from streaming.job.environment import execution_environment
from streaming.job.pipeline import _COMPACT_EVENT, _register_functions

pytestmark = pytest.mark.integration

MAX_BYTES = 200


@pytest.fixture(scope="module")
def compact_event(installed: Settings) -> Callable[[list[str]], list[Row | None]]:
    """Read records with the job's Java function, in one Flink job per call."""
    t_env = StreamTableEnvironment.create(execution_environment(installed))
    _register_functions(t_env)

    def read(records: list[str]) -> list[Row | None]:
        table = t_env.from_elements(
            list(enumerate(records)),
            DataTypes.ROW(
                [DataTypes.FIELD("n", DataTypes.INT()), DataTypes.FIELD("r", DataTypes.STRING())]
            ),
        )
        t_env.create_temporary_view("records", table)
        query = f"SELECT n, {_COMPACT_EVENT}(CAST(r AS BYTES), {MAX_BYTES}) FROM records"
        with t_env.execute_sql(query).collect() as rows:
            read = {row[0]: row[1] for row in rows}
        t_env.drop_temporary_view("records")
        return [read[n] for n in range(len(records))]

    return read


def _random_event(rng: random.Random) -> Event:
    return Event(
        rng.randrange(10 ** rng.randrange(1, 19)),
        rng.randrange(10 ** rng.randrange(1, 19)),
        rng.choice([0.0, 0.5, 3.5, 4.0, 5.0, rng.uniform(-1e6, 1e6), 1e-7, 2.5e21, -0.0]),
        rng.randrange(10 ** rng.randrange(1, 13)),
    )


def test_everything_the_producer_writes_is_read_to_its_fields(
    compact_event: Callable[[list[str]], list[Row | None]],
) -> None:
    rng = random.Random(3)
    events = [_random_event(rng) for _ in range(2_000)]
    records = [event_to_json(event).decode() for event in events]
    rules = EventSettings(
        min_rating=-1e30, max_rating=1e30, max_event_time=10**12, max_record_bytes=MAX_BYTES
    )
    for event, record, read in zip(events, records, compact_event(records), strict=True):
        assert read is not None, record
        assert tuple(read) == (event.user_id, event.item_id, event.rating, event.event_time)
        # the validator, which judges every other record, reads the same fields
        assert event_from_json(record.encode(), rules) == event


@pytest.mark.parametrize("oversized", [False, True])
def test_a_compact_record_longer_than_the_limit_is_left_to_the_validator(
    compact_event: Callable[[list[str]], list[Row | None]], oversized: bool
) -> None:
    record = '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}'
    padded = record.replace("4.0", "4." + "0" * (MAX_BYTES - len(record) + 1 + oversized))
    assert len(padded) == MAX_BYTES + oversized
    (read,) = compact_event([padded])
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


def test_anything_else_is_left_to_the_validator(
    compact_event: Callable[[list[str]], list[Row | None]],
) -> None:
    control = '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5}'  # the test can fail
    reads = compact_event([control, *NEAR_MISSES])
    assert tuple(reads[0]) == (1, 2, 4.0, 5)
    assert dict(zip(NEAR_MISSES, reads[1:], strict=True)) == dict.fromkeys(NEAR_MISSES)
