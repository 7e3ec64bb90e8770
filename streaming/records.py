"""Every topic's record format: its writer and its parser side by side, per topic.

Where Flink SQL writes or reads a format, the SQL expression that does is here too, as plain
text (the job's queries splice it in), next to the Python side that reads or writes the same
bytes. The job, the trainer, the producer and the tests all import the formats from here, so
a format changes in one place; the schemas are documented in docs/streaming-job.md ("Topics
and their records"). A change to any format here is a change operators must hear about:
say so in CHANGELOG.md.

The module imports neither Flink nor gensim nor Redis: the job and the trainer both use it.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from streaming.config import EventSettings
from streaming.core.events import Event, InvalidEventError, Reason, event_from_mapping
from streaming.core.walks import Walk

__all__ = [
    "ITEM_STAGE",
    "MALFORMED",
    "CountUpdate",
    "Sighting",
    "count_update",
    "dead_letter",
    "event_from_json",
    "event_to_json",
    "late_event",
    "read_sample",
    "read_sighting",
    "read_user_items",
    "transition_sample",
    "user_items",
    "walk_sample",
    "walk_task_holder",
]


def _dumps(record: Mapping[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


# --- ratings (`kafka.topics.ratings`, key: user id) ------------------------------------------
# Any JSON object with the four fields is a rating; the compact form `event_to_json` writes
# (these four fields in this order, no spaces) is read in the JVM by `CompactEvent.java`
# without a Python call, every other form by `event_from_json`.


def event_to_json(event: Event) -> bytes:
    """The compact form of a valid event: the producer's record value.

    Formatted directly (several times faster than json.dumps), and the same bytes as
    `json.dumps(event._asdict(), separators=(",", ":"))`: ids and times are ints, ratings
    finite floats, whose repr is JSON's."""
    return (
        f'{{"user_id":{event.user_id},"item_id":{event.item_id},'
        f'"rating":{event.rating!r},"event_time":{event.event_time}}}'
    ).encode()


def event_from_json(
    raw: bytes | str | None, rules: EventSettings, received_s: int | None = None
) -> Event:
    """An event from a ratings record's value (None: a Kafka tombstone), received at
    `received_s`; fields other than the four are ignored, so producers can add their own.
    Raises `InvalidEventError` with its reason for anything that is not a valid event."""
    if raw is None:
        raise InvalidEventError(Reason.NULL_VALUE, "the record has no value (a tombstone)")
    size = len(raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw)
    if size > rules.max_record_bytes:
        raise InvalidEventError(
            Reason.OVERSIZED, f"record has {size} bytes, more than {rules.max_record_bytes}"
        )
    try:
        # decode first: json.loads would guess UTF-16/32 from the bytes; the wire is UTF-8
        record = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as exc:
        raise InvalidEventError(Reason.BAD_ENCODING, f"not UTF-8: {exc.reason}") from None
    except ValueError as exc:
        raise InvalidEventError(Reason.BAD_JSON, str(exc)) from None
    except RecursionError:
        raise InvalidEventError(Reason.BAD_JSON, "nested too deeply") from None
    return event_from_mapping(record, rules, received_s)


# --- dead letters (`kafka.topics.dead_letter`) -------------------------------------------------

DEAD_LETTER_VALUE_BYTES = 16_384
"""A dead letter carries at most this much of the rejected value (and of its key), so it stays
far below any broker's record limit however large the record was."""


class DeadLetter(NamedTuple):
    reason: str
    detail: str
    key: str | None
    partition: int
    offset: int
    value: bytes | None
    """The rejected value, or its first `DEAD_LETTER_VALUE_BYTES` when `truncated`."""
    value_bytes: int | None
    truncated: bool


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


def read_dead_letter(raw: bytes | str) -> DeadLetter:
    """A dead letter's fields, the value as bytes (from `value_base64`)."""
    record = json.loads(raw)
    encoded = record["value_base64"]
    return DeadLetter(
        record["reason"],
        record["detail"],
        record["key"],
        int(record["partition"]),
        int(record["offset"]),
        None if encoded is None else base64.b64decode(encoded),
        record["value_bytes"],
        bool(record["truncated"]),
    )


# --- late events (`kafka.topics.late`) ---------------------------------------------------------


class LateEvent(NamedTuple):
    event: Event
    partition: int
    offset: int
    watermark: int
    """Event time (seconds) the stream had reached, at least, when the event arrived."""


def late_event(event: Event, partition: int, offset: int, watermark: int) -> str:
    """A valid high rating that arrived at or behind the watermark (event time, seconds)."""
    return _dumps(
        {**event._asdict(), "partition": partition, "offset": offset, "watermark": watermark}
    )


def read_late_event(raw: bytes | str) -> LateEvent:
    record = json.loads(raw)
    event = Event(*(record[field] for field in Event._fields))
    return LateEvent(event, record["partition"], record["offset"], record["watermark"])


# --- transition batches (job-internal: Flink SQL -> the item function) -------------------------
# One shard's transitions of one window, "SRC DST EVENT_TIME" joined by ",", aggregated from
# the columns src, dst, event_time. Joined from an ARRAY_AGG: LISTAGG appends each row by
# copying the string so far (its concatenation was 37% of the thread it runs in; the array
# took a third off that thread).

TRANSITION_BATCH_SQL = (
    "ARRAY_JOIN(ARRAY_AGG("
    "CAST(src AS STRING) || ' ' || CAST(dst AS STRING) || ' ' || CAST(event_time AS STRING)"
    "), ',')"
)
"""The aggregate that writes a transition batch (read by `parse_transitions`)."""


def parse_transitions(batch: str) -> dict[int, list[tuple[int, int]]]:
    """A batch as `TRANSITION_BATCH_SQL` writes it, as (item, event time) by source item, each
    item's in order of arrival."""
    by_src: dict[int, list[tuple[int, int]]] = {}
    for transition in batch.split(","):
        src, dst, event_time = transition.split(" ")
        by_src.setdefault(int(src), []).append((int(dst), int(event_time)))
    return by_src


# --- walk work (job-internal: the item stage -> every walk task, `stream.walk_stage` replicated) --
# One record per item-stage call: the walks it started, "ITEM EVENT_TIME COUNT" joined by ",",
# then "|", then the transition batch it counted, as `TRANSITION_BATCH_SQL` wrote it (empty
# for a call that counted none), then "|", then the items it forgot (`stream.item_idle_ttl_s`),
# joined by ",". Every walk task applies the transitions to its step tables, drops the
# forgotten items' tables and steps its share of the walks.


class WalkWork(NamedTuple):
    """A walk work record, as `read_walk_work` reads it."""

    starts: list[tuple[int, int, int]]
    """(item, event time, count) of the walks started."""
    transitions: dict[int, list[tuple[int, int]]]
    """(next item, event time) of the transitions counted, by source item."""
    forgotten: list[int]
    """Items whose transitions the item stage dropped."""


def walk_work(
    starts: Mapping[tuple[int, int], int], transitions: str, forgotten: Iterable[int] = ()
) -> str:
    """The walks started, COUNT per (item, event time), the transitions counted and the
    items forgotten."""
    started = ",".join(
        f"{item} {event_time} {count}" for (item, event_time), count in starts.items()
    )
    return f"{started}|{transitions}|{','.join(map(str, forgotten))}"


def read_walk_work(text: str) -> WalkWork:
    started, transitions, forgotten = text.split("|")
    starts = [
        (int(item), int(event_time), int(count))
        for item, event_time, count in (start.split(" ") for start in started.split(",") if start)
    ]
    return WalkWork(
        starts,
        parse_transitions(transitions) if transitions else {},
        [int(item) for item in forgotten.split(",") if item],
    )


# --- walk hops (`kafka.topics.walk_hops`, internal: the item function -> itself) ---------------
# One message per shard, written by `encode_batch`; the job reads a message's shard in SQL and
# hands the item function a JSON array of them (one, or a shard's within `stream.hop_batch_ms`),
# which `decode_batches` reads. The SQL reads the message from column v.

HOP_SHARD_SQL = "JSON_VALUE(v, '$.shard')"
"""The shard a hop message is bound for (its Kafka key in effect)."""
HOP_ONE_SQL = "'[' || v || ']'"
"""One hop message as the array `decode_batches` reads."""
HOP_BATCH_SQL = "'[' || ARRAY_JOIN(ARRAY_AGG(v), ',') || ']'"
"""A window's hop messages (grouped by shard) as the array `decode_batches` reads."""


def encode_batch(shard: int, walks: Mapping[int, list[Walk]]) -> str:
    """Walks bound for items of one shard, by item: one message on the feedback topic."""
    return json.dumps(
        {
            "shard": shard,
            "walks": {
                str(item): [[list(w.path), w.newest_event_time] for w in batch]
                for item, batch in walks.items()
            },
        },
        separators=(",", ":"),
    )


def decode_batches(text: str) -> dict[int, list[Walk]]:
    """Walks of a JSON array of `encode_batch` messages, by item."""
    walks: dict[int, list[Walk]] = {}
    for record in json.loads(text):
        for item, batch in record["walks"].items():
            arrived = [Walk(tuple(path), int(newest)) for path, newest in batch]
            walks.setdefault(int(item), []).extend(arrived)
    return walks


# --- samples (`kafka.topics.samples`: the job -> the trainer) ----------------------------------


class Sample(NamedTuple):
    """A samples record: a walk, or one transition of one user's sequence (`user` set)."""

    kind: str
    items: list[int]
    newest_event_time: int
    user: int | None = None


def walk_sample(path: tuple[int, ...], newest_event_time: int) -> str:
    """A finished walk for the trainer, with the newest event time that caused it: the bytes
    `_dumps` writes for {"kind": "walk", "items": path, "newest_event_time": ...}, formatted
    directly: a walk task writes one per walk, and the JSON encoder is several times slower."""
    items = ",".join(map(str, path))
    return f'{{"items":[{items}],"kind":"walk","newest_event_time":{newest_event_time}}}'


def transition_sample(user: int, src: int, dst: int, event_time: int) -> str:
    """One transition of a user's ordered high ratings: the trainer chains a user's
    transitions, ordered by (event time, dst), back into the user's whole sequence."""
    return _dumps(
        {"kind": "transition", "items": [src, dst], "newest_event_time": event_time, "user": user}
    )


TRANSITION_SAMPLE_SQL = (
    """'{"items":[' || CAST(src AS STRING) || ',' || CAST(dst AS STRING) || """
    """'],"kind":"transition","newest_event_time":' || CAST(event_time AS STRING) || """
    """',"user":' || CAST(user_id AS STRING) || '}'"""
)
"""The expression that writes `transition_sample`'s bytes from the columns user_id, src, dst
and event_time."""


MALFORMED = (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError)
"""What `read_sample` and `read_sighting` raise for a malformed record, whatever its bytes."""


def read_sample(raw: bytes | str) -> Sample:
    """A sample of either kind. A transition has exactly two items and a user.

    Raises one of `MALFORMED` for a malformed record."""
    record = json.loads(raw)
    items = [int(item) for item in record["items"]]
    newest = int(record.get("newest_event_time", 0))
    kind = record.get("kind", "walk")
    if kind == "transition":
        if len(items) != 2:
            raise ValueError(f"a transition has two items, this one {len(items)}")
        return Sample(kind, items, newest, int(record["user"]))
    if kind != "walk":
        raise ValueError(f"unknown sample kind {kind!r}")
    return Sample(kind, items, newest)


# --- items (`kafka.topics.items`: the job's SQL -> the trainer) --------------------------------
# One sighting per record: an item, one neighbour and how often the item has seen it so far,
# `first` on the item's first sighting (again after the job forgot an idle item). Written by
# Flink SQL from the columns n (the item's sightings so far), item_id, neighbour and times,
# which `ItemSightings.java` counts.

SIGHTING_SQL = (
    """'{"first":' || CASE WHEN n = 1 THEN 'true' ELSE 'false' END || ',"item_id":' || """
    """CAST(item_id AS STRING) || ',"neighbours":{"' || CAST(neighbour AS STRING) || '":' || """
    """CAST(times AS STRING) || '}}'"""
)
"""The expression that writes an items record (read by `read_sighting`)."""


class Sighting(NamedTuple):
    """An items record."""

    item: int
    neighbours: dict[int, int]  # neighbour -> times seen so far (one in what the job writes)
    first: bool  # the item's first sighting: what was known of its neighbours no longer holds


def read_sighting(raw: bytes | str) -> Sighting:
    """An items record. Raises one of `MALFORMED` for a malformed record."""
    record = json.loads(raw)
    first = record["first"]
    if not isinstance(first, bool):
        raise TypeError(f"an items record's first is true or false, not {first!r}")
    counts = {int(n): int(c) for n, c in record["neighbours"].items()}
    return Sighting(int(record["item_id"]), counts, first)


# --- users (`kafka.topics.users`, key: user id: the job -> the trainer's user vectors) --------
# A user's recent kept items (oldest first) whenever they change, with `kept`, how many items
# the user's sequence has had, and the event time of the change. A reader keeps, per user, the
# record with the highest (event_time, kept): `kept` grows within a sequence and starts again
# at a later event time when the job forgot an idle user (`users.idle_ttl_s`), so a record
# repeated after a restore (the sink writes at least once, so that a change is readable at
# once rather than at the next checkpoint) changes nothing.


class UserItems(NamedTuple):
    """A users record."""

    user: int
    kept: int
    items: list[int]
    event_time: int


USER_ITEMS_SQL = (
    """'{"user":' || CAST(user_id AS STRING) || ',"kept":' || CAST(kept AS STRING) || """
    """',"items":[' || items || '],"event_time":' || CAST(event_time AS STRING) || '}'"""
)
"""The expression that writes a users record from the columns user_id, kept, items (the ids
joined by commas, as `UserTransitions.java` sends them) and event_time. The record starts with
its user (`UserKey.java` reads the Kafka key from there)."""


def user_items(user: int, kept: int, items: list[int], event_time: int) -> str:
    """The bytes `USER_ITEMS_SQL` writes, for tests and replays."""
    joined = ",".join(str(item) for item in items)
    return f'{{"user":{user},"kept":{kept},"items":[{joined}],"event_time":{event_time}}}'


def read_user_items(raw: bytes | str) -> UserItems:
    """A users record. Raises one of `MALFORMED` for a malformed one (including a `kept`
    smaller than its items, or a negative id)."""
    record = json.loads(raw)
    items = [int(item) for item in record["items"]]
    parsed = UserItems(int(record["user"]), int(record["kept"]), items, int(record["event_time"]))
    if parsed.kept < len(items) or min(items, default=0) < 0:
        raise ValueError("a users record needs kept >= its items and item ids >= 0")
    return parsed


# --- count updates (`kafka.topics.counts`, with `stream.emit_counts`) --------------------------


class CountUpdate(NamedTuple):
    """A counts record: the weight of the transitions src -> dst as of event time `as_of`
    (None without decay: the weight is their count), as `holder` has it: the item stage
    ("items"), or a walk task's step tables ("walks-N", task N, `stream.walk_stage` =
    replicated), which must agree with it."""

    src: int
    dst: int
    weight: float
    as_of: int | None
    holder: str


ITEM_STAGE = "items"
"""The holder of the item stage's count updates."""


def walk_task_holder(task: int) -> str:
    """The holder of a walk task's count updates."""
    return f"walks-{task}"


def count_update(src: int, dst: int, weight: float, as_of: int | None, holder: str) -> str:
    """A pair's weight after a batch that changed it: "SRC DST WEIGHT AS_OF HOLDER" ("-" for
    an AS_OF of None)."""
    return f"{src} {dst} {weight!r} {'-' if as_of is None else as_of} {holder}"


def read_count_update(raw: bytes | str) -> CountUpdate:
    text = raw.decode() if isinstance(raw, bytes) else raw
    src, dst, weight, as_of, holder = text.split()
    return CountUpdate(
        int(src), int(dst), float(weight), None if as_of == "-" else int(as_of), holder
    )
