"""The job's Python functions: thin Flink wrappers around `streaming.core`.

Everything that happens once per event runs in the JVM (see `pipeline`); Python sees a record
only for an unusual one (`validate`), for one item's batch of new transitions, or for a batch
of walks to step. The item function keeps plain Python objects in a ValueState and calls the
core logic; nothing here decides anything the core does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction

from streaming.config import EventSettings, StreamSettings
from streaming.core.events import InvalidEventError, Reason, event_from_json
from streaming.core.neighbours import FirstNeighbours, ItemNeighbours
from streaming.core.walks import Walk, WalkStarter, decode_batch, encode_batch, step_walks
from streaming.job import records

__all__ = [
    "COUNTS",
    "DEAD_LETTER",
    "DELTA",
    "HOPS",
    "ITEMS",
    "ITEM_INPUT_TYPE",
    "LATE",
    "LATE_EVENT",
    "REJECTED",
    "SAMPLES",
    "VALIDATION_TYPE",
    "WALKS",
    "ItemFunction",
    "Validate",
]

ITEM_INPUT_TYPE = Types.ROW([Types.INT(), Types.LONG(), Types.STRING(), Types.STRING()])
"""(kind, event time, text, more text), keyed by item id (Flink keys it in the JVM):
DELTA: newest event time, "dst,dst,..." out of the item, "src,..." into it (either may be null);
WALKS: -, a walk batch; REJECTED/LATE: -, the record for the dead-letter/late topic."""
DELTA, WALKS, REJECTED, LATE_EVENT = 0, 1, 2, 3
KEY_MISMATCH = "key_mismatch"

VALIDATION_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("dead_letter", DataTypes.STRING()),
        DataTypes.FIELD("user_id", DataTypes.BIGINT()),
        DataTypes.FIELD("item_id", DataTypes.BIGINT()),
        DataTypes.FIELD("rating", DataTypes.DOUBLE()),
        DataTypes.FIELD("event_time", DataTypes.BIGINT()),
    ]
)

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
LATE = OutputTag("late", Types.STRING())
SAMPLES = OutputTag("samples", Types.STRING())
HOPS = OutputTag("hops", Types.STRING())
COUNTS = OutputTag("counts", Types.STRING())
ITEMS = OutputTag("items", Types.STRING())


def _subtask_index(runtime_context: RuntimeContext) -> int:
    """PyFlink 2.2's thread-mode context calls getIndexOfThisSubtask, gone from Flink 2's
    Java RuntimeContext (it moved to TaskInfo); ask TaskInfo directly there."""
    java_context = getattr(runtime_context, "_runtime_context", None)
    if java_context is not None:
        return int(java_context.getTaskInfo().getIndexOfThisSubtask())
    return int(runtime_context.get_index_of_this_subtask())


class Validate(ScalarFunction):  # type: ignore[misc]
    """The one validator, for every record the JVM did not recognise as a plain valid event:
    a dead-letter record with the reason (counted per reason), or the event's fields."""

    def __init__(self, rules: EventSettings) -> None:
        self.rules = rules

    def open(self, function_context: FunctionContext) -> None:
        metrics = function_context.get_metric_group()
        self.rejected = {
            reason: metrics.counter(f"dead_letter_{reason}")
            for reason in [*(r.value for r in Reason), KEY_MISMATCH]
        }

    def eval(self, key: str | None, raw: bytes, partition: int, offset: int) -> Row:
        try:
            event = event_from_json(raw, self.rules)
        except InvalidEventError as error:
            return self._reject(error.reason.value, error.detail, key, partition, offset, raw)
        if key != str(event.user_id):
            detail = f"record key {key!r} is not its user_id {event.user_id}"
            return self._reject(KEY_MISMATCH, detail, key, partition, offset, raw)
        return Row(None, event.user_id, event.item_id, event.rating, event.event_time)

    def _reject(
        self, reason: str, detail: str, key: str | None, partition: int, offset: int, raw: bytes
    ) -> Row:
        self.rejected[reason].inc()
        record = records.dead_letter(reason, detail, key, partition, offset, raw)
        return Row(record, None, None, None, None)


def _ids(text: str | None) -> list[int]:
    return [int(part) for part in text.split(",")] if text else []


class ItemFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Per item: out-neighbour counts and first neighbours, updated by batches of new
    transitions; starts walks as the item's weight grows and steps the walks that reach it.
    Also forwards the rejected and late records the JVM routed here (few, by definition)."""

    def __init__(self, stream: StreamSettings, walk_length: int, seed: int, walks: bool) -> None:
        self.stream = stream
        self.walk_length = walk_length
        self.seed = seed
        self.walks = walks

    def open(self, runtime_context: RuntimeContext) -> None:
        self.items = runtime_context.get_state(
            ValueStateDescriptor("item", Types.PICKLED_BYTE_ARRAY())
        )
        task = _subtask_index(runtime_context)
        self.rng = np.random.default_rng([self.seed, task])
        metrics = runtime_context.get_metrics_group()
        self.late = metrics.counter("late_events")
        self.transitions = metrics.counter("transitions")
        self.steps = metrics.counter("walk_steps")
        self.finished = metrics.counter("walks_finished")

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        kind, event_time, text, more = value
        if kind == REJECTED:
            yield DEAD_LETTER, text
            return
        if kind == LATE_EVENT:
            self.late.inc()
            yield LATE, text
            return
        item = int(ctx.get_current_key())
        state = self.items.value()
        neighbours, starter, first = state or (
            ItemNeighbours(),
            WalkStarter(self.stream.walks_per_weight),
            FirstNeighbours(self.stream.item_neighbours),
        )
        if kind == DELTA:
            outgoing = Counter(_ids(text))
            for neighbour, count in outgoing.items():
                neighbours.add(neighbour, count)
                if self.stream.emit_counts:
                    yield (
                        COUNTS,
                        records.count_update(item, neighbour, neighbours.counts[neighbour]),
                    )
            gain = sum(outgoing.values())
            self.transitions.inc(gain)
            announced = bool(first.counts)
            if len(first.counts) < first.limit and first.see([*_ids(more), *_ids(text)]):
                yield ITEMS, records.item_sighting(item, first.counts, not announced)
            starts = starter.on_weight_gain(gain) if self.walks else 0
            self.items.update((neighbours, starter, first))
            walks = [Walk((item,), event_time)] * starts
        else:
            _, walks = decode_batch(text)
        if walks:
            yield from self._step(item, walks, neighbours)

    def _step(self, item: int, walks: list[Walk], neighbours: ItemNeighbours) -> Iterator[Any]:
        done, onward = step_walks(item, walks, neighbours, self.walk_length, self.rng)
        self.steps.inc(sum(len(batch) for batch in onward.values()) + len(done))
        self.finished.inc(len(done))
        for walk in done:
            yield SAMPLES, records.walk_sample(walk.path, walk.newest_event_time)
        for nxt, batch in onward.items():
            yield HOPS, encode_batch(nxt, batch)
