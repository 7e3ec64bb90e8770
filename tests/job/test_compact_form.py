"""The compact form the JVM accepts without a Python call: exactly what the producer writes."""

from __future__ import annotations

import random
import re

import pytest

from streaming.core.events import Event, event_to_json
from streaming.job.pipeline import _COMPACT

COMPACT = re.compile(_COMPACT)  # Python's re reads this pattern as Java's does


def test_everything_the_producer_writes_is_compact() -> None:
    rng = random.Random(3)
    for _ in range(2_000):
        event = Event(
            rng.randrange(10 ** rng.randrange(1, 19)),
            rng.randrange(10 ** rng.randrange(1, 19)),
            rng.choice([0.0, 0.5, 3.5, 4.0, 5.0, rng.uniform(-1e6, 1e6), 1e-7, 2.5e21]),
            rng.randrange(10 ** rng.randrange(1, 13)),
        )
        assert COMPACT.search(event_to_json(event).decode()), event


@pytest.mark.parametrize(
    "record",
    [
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
        '{"user_id":1,"item_id":2,"rating":NaN,"event_time":5}',
        '{"user_id":1,"item_id":2,"rating":4.0,"event_time":5.0}',
        ' {"user_id":1,"item_id":2,"rating":4.0,"event_time":5}',
    ],
)
def test_anything_else_is_left_to_the_validator(record: str) -> None:
    assert not COMPACT.search(record)
