"""Ratings records as a careless or hostile producer sends them, for fuzzing the readers.

`nasty_records(rng, n)` mixes valid events in many JSON forms with near misses (values out of
range, wrong types, escaped or duplicated keys, NaN, huge numbers, deep nesting), invalid
UTF-8, mutated records and random bytes, each with a Kafka key (mostly the right one) and a
broker timestamp. Seeded, so a failure names a reproducible record.
"""

from __future__ import annotations

import json
import random
from typing import NamedTuple

__all__ = ["NOW_S", "NastyRecord", "nasty_records"]

NOW_S = 1_780_000_000
"""The broker time the records are received at, give or take a little."""


class NastyRecord(NamedTuple):
    key: str | None
    value: bytes | None
    received_ms: int


_FIELDS = ("user_id", "item_id", "rating", "event_time")
_ODD_VALUES: list[object] = [
    -1, 0, 2**63 - 1, 2**63, 10**30, -(10**30), 1.0, 4.5, -0.0, 1e308, True, False, None,
    "5", "", [], {}, [1], {"a": 1}, 10**11, 10**11 + 1, NOW_S + 86_400, NOW_S + 86_401,
]  # fmt: skip
_RAW_SNIPPETS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400, b"-0", b"0.0",
    b"1E2", b"01", b"1.", b".5", b"+1", b"\"\\ud800\"", b"\"\\u0000\"", b"\"\x01\"", b"[]",
    b"{}", b"null", b"true", b"\"4.5\"", b"4" * 30, b"9" * 19, b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775808",
]  # fmt: skip
_BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]


def _event(rng: random.Random) -> dict[str, object]:
    return {
        "user_id": rng.choice([rng.randrange(1, 1000), rng.randrange(2**63)]),
        "item_id": rng.choice([rng.randrange(1, 1000), rng.randrange(2**63)]),
        "rating": rng.choice([0.5, 1.0, 3.5, 4.0, 5.0, 4, rng.uniform(0, 5)]),
        "event_time": rng.choice([rng.randrange(NOW_S), NOW_S - 5, rng.randrange(10**9)]),
    }


def _dumps(record: dict[str, object], rng: random.Random) -> bytes:
    separators = rng.choice([(",", ":"), (", ", ": "), (",", ": "), (" ,", " : ")])
    text = json.dumps(record, separators=separators, ensure_ascii=rng.random() < 0.5)
    return text.encode()


def _valid_form(rng: random.Random) -> tuple[dict[str, object], bytes]:
    record = _event(rng)
    items = list(record.items())
    if rng.random() < 0.5:
        rng.shuffle(items)
    if rng.random() < 0.3:
        items.insert(rng.randrange(len(items) + 1), ("extra", rng.choice(_ODD_VALUES)))
    return record, _dumps(dict(items), rng)


def _near_miss(rng: random.Random) -> tuple[dict[str, object], bytes]:
    record = _event(rng)
    kind = rng.randrange(7)
    if kind == 0:  # one field with an odd value
        record[rng.choice(_FIELDS)] = rng.choice(_ODD_VALUES)
        return record, _dumps(record, rng)
    if kind == 1:  # one field missing
        del record[rng.choice(_FIELDS)]
        return record, _dumps(record, rng)
    text = _dumps(record, rng)
    field = rng.choice(_FIELDS).encode()
    if kind == 2:  # a raw literal json.dumps would never write
        start = text.index(b'"' + field + b'"')
        colon = text.index(b":", start)
        end = min(i for i in (text.find(b",", colon), text.find(b"}", colon)) if i >= 0)
        return record, text[: colon + 1] + rng.choice(_RAW_SNIPPETS) + text[end:]
    if kind == 3:  # the field again, or spelled with an escape
        spelled = field.replace(b"_", b"\\u005f") if rng.random() < 0.5 else field
        again = b'"' + spelled + b'":' + rng.choice(_RAW_SNIPPETS)
        return record, text[:-1] + b"," + again + b"}"
    if kind == 4:  # deep nesting
        depth = rng.choice([10, 63, 64, 65, 200, 2000])
        return record, text[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 5:  # invalid UTF-8 somewhere
        at = rng.randrange(len(text) + 1)
        return record, text[:at] + rng.choice(_BAD_UTF8) + text[at:]
    # a byte-order mark, or a token after the object
    return record, rng.choice([b"\xef\xbb\xbf" + text, text + b"x", text + b"{}", text + b" "])


def _mutated(rng: random.Random) -> bytes:
    data = bytearray(_valid_form(rng)[1])
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data))
        action = rng.randrange(3)
        if action == 0:
            data[at] = rng.randrange(256)
        elif action == 1:
            del data[at]
        else:
            data.insert(at, rng.choice(b'{}[]":,.-+eE0123456789 \\u'))
    return bytes(data)


def nasty_records(rng: random.Random, n: int) -> list[NastyRecord]:
    records = []
    for _ in range(n):
        kind = rng.random()
        user: object = None
        if kind < 0.3:
            record, value = _valid_form(rng)
            user = record["user_id"]
        elif kind < 0.7:
            record, value = _near_miss(rng)
            user = record.get("user_id")
        elif kind < 0.9:
            value = _mutated(rng)
        else:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        roll = rng.random()
        key = str(user) if user is not None and roll < 0.85 else None if roll < 0.9 else "1"
        received = rng.choice([NOW_S, NOW_S, NOW_S, 0, -1]) * 1000 + rng.randrange(1000)
        records.append(NastyRecord(key, value if rng.random() > 0.01 else None, received))
    return records
