"""The job's Python functions: thin Flink wrappers around `streaming.core`.

The keyed ones declare their state in `open()`, keep one plain Python object per key in a
ValueState, and call the core logic; nothing here decides anything the core does not.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import (
    BroadcastProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from streaming.config import EventSettings, StreamSettings
from streaming.core.events import Event, InvalidEventError, Reason
from streaming.core.item_cache import ItemCache
from streaming.core.neighbours import HopTable, ItemNeighbours, idle_items
from streaming.core.sightings import SightingFilter
from streaming.core.walks import (
    StepTables,
    Walk,
    WalkStarter,
    add_transitions,
    advance_walks,
    walks_here,
)
from streaming.records import (
    ITEM_STAGE,
    count_update,
    dead_letter,
    decode_batches,
    encode_batch,
    event_from_json,
    late_event,
    parse_transitions,
    read_walk_work,
    walk_sample,
    walk_task_holder,
    walk_work,
)

__all__ = [
    "COUNTS",
    "DEAD_LETTER",
    "HIGH_RATING_TYPE",
    "HOPS",
    "ITEM_INPUT_TYPE",
    "JOINED",
    "RECORD_TYPE",
    "SAMPLES",
    "SIGHTINGS",
    "TRANSITIONS",
    "WALKS",
    "WALK_WORK",
    "ItemFunction",
    "LateFunction",
    "RecordFunction",
    "WalkFunction",
    "step_tables_state",
]

RECORD_TYPE = Types.ROW(
    [
        Types.STRING(),
        Types.ROW([Types.INT(), Types.LONG(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())]),
    ]
)
"""(Kafka key, (partition, offset, received, raw value)) of a ratings record: received is the
record's Kafka timestamp in whole seconds."""
HIGH_RATING_TYPE = Types.ROW_NAMED(
    ["user_id", "item_id", "rating", "event_time", "partition", "offset"],
    [Types.LONG(), Types.LONG(), Types.DOUBLE(), Types.LONG(), Types.INT(), Types.LONG()],
)
"""A valid high rating and where it was read, on its way to be judged on time or late."""
# Keyed inputs are Row(key, payload): Flink keys them in the JVM on field 0.
ITEM_INPUT_TYPE = Types.ROW([Types.INT(), Types.STRING()])
"""(kind, payload): a batch of transitions (`parse_transitions`) or of walks
(`decode_batches`); keyed by the shard of their items."""
TRANSITIONS, WALKS = 0, 1
JOINED = "\n"
"""Joins the walk samples (the hop messages, the sightings) of one call in one side-output
record; no JSON record holds a raw newline."""
KEY_MISMATCH = "key_mismatch"

_Item = tuple[ItemNeighbours, WalkStarter]
_StoredItem = tuple[bytes, float, int]
"""(neighbours' `to_bytes`, walk credit, newest event time): builtins and bytes, which pickle
several times faster than the objects themselves (pickling the objects would take most of the
item function's time)."""

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
SAMPLES = OutputTag("samples", Types.STRING())
HOPS = OutputTag("hops", Types.STRING())
COUNTS = OutputTag("counts", Types.STRING())
WALK_WORK = OutputTag("walk-work", Types.STRING())
"""The walks an item-stage call started and the transitions it counted (`walk_work`), for
every walk task (`stream.walk_stage` replicated)."""
SIGHTINGS = OutputTag("sightings", Types.STRING())
"""Sightings of new edges, "ITEM SEEN_ITEM" joined by `JOINED`: the items topic's input."""

_MS = 1000
_KEY_SHOWN = 40
"""How much of a mismatched key a dead letter's detail quotes (the record has it whole)."""
_SIGHTING_FILTER_ITEMS = 1_000_000
"""Items a task tracks to skip sightings the items topic would drop (~100 bytes each)."""


class _Entries(dict[Any, Any]):
    """A dict that iterates its (key, value) pairs."""

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items())


def _put_all(state: Any, entries: dict[Any, Any]) -> None:
    """Write `entries` into a MapState or broadcast state in one call. PyFlink's `put_all`
    reads a dict's items in thread mode but iterates its argument as (key, value) pairs in
    process mode (`flink.python_execution_mode`); a dict that iterates its items is both."""
    state.put_all(_Entries(entries))


def _subtask(runtime_context: RuntimeContext) -> tuple[int, int]:
    """(this task's index, the operator's parallelism). PyFlink 2.2's thread-mode context
    calls getIndexOfThisSubtask, gone from Flink 2's Java RuntimeContext (it moved to
    TaskInfo); ask TaskInfo directly there."""
    java_context = getattr(runtime_context, "_runtime_context", None)
    if java_context is not None:
        info = java_context.getTaskInfo()
        return int(info.getIndexOfThisSubtask()), int(info.getNumberOfParallelSubtasks())
    return (
        int(runtime_context.get_index_of_this_subtask()),
        int(runtime_context.get_number_of_parallel_subtasks()),
    )


class _Tally:
    """A Flink counter fed from Python in bulk: what a call adds is passed on to the JVM with
    the first call a second or more after the last passing (and on `flush`), as each passing
    is a call into the JVM. The counter lags by up to a second while calls come, and until
    the next call or `close` when they stop."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._pending = 0
        self._due = time.monotonic() + 1

    def inc(self, n: int) -> None:
        self._pending += n
        now = time.monotonic()
        if now >= self._due:
            self.flush()
            self._due = now + 1

    def flush(self) -> None:
        if self._pending:
            self._counter.inc(self._pending)
            self._pending = 0


class RecordFunction(ProcessFunction):  # type: ignore[misc]
    """The ratings records the JVM did not accept at a glance (not in the producer's compact
    form, or out of range): the one validator decides. Invalid ones become dead letters with
    their reason; valid high ratings go back to the JVM, to be judged on time or late with
    the compact ones."""

    def __init__(self, rules: EventSettings) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        metrics = runtime_context.get_metrics_group()
        self.rejected = {
            reason: metrics.counter(f"dead_letter_{reason}")
            for reason in [*(r.value for r in Reason), KEY_MISMATCH]
        }

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        key, (partition, offset, received, raw) = value
        try:
            event = event_from_json(raw, self.rules, received)
        except InvalidEventError as error:
            self.rejected[error.reason.value].inc()
            yield (
                DEAD_LETTER,
                dead_letter(error.reason.value, error.detail, key, partition, offset, raw),
            )
            return
        if key != str(event.user_id):
            self.rejected[KEY_MISMATCH].inc()
            shown = key if len(key) <= _KEY_SHOWN else f"{key[:_KEY_SHOWN]}..."
            detail = f"record key {shown!r} is not its user_id {event.user_id}"
            yield (
                DEAD_LETTER,
                dead_letter(KEY_MISMATCH, detail, key, partition, offset, raw),
            )
            return
        if event.rating >= self.rules.high_rating:
            yield Row(
                event.user_id, event.item_id, event.rating, event.event_time, partition, offset
            )


class LateFunction(ProcessFunction):  # type: ignore[misc]
    """Counts and describes the valid high ratings found behind the watermark, with the
    watermark as it sees it (at or past the one they were judged on)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.late = runtime_context.get_metrics_group().counter("late_events")

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterator[str]:
        user, item, rating, event_time, partition, offset = value
        self.late.inc()
        watermark = ctx.timer_service().current_watermark() // _MS
        yield late_event(Event(user, item, rating, event_time), partition, offset, watermark)


class ItemFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Per shard of items: each item's out-neighbour counts and walk starter, in a MapState.

    Called once per batch of a shard's transitions (the JVM batches them), not once per
    transition: the crossing into Python for each record cost more than the work. A timer per
    shard, every `stream.refresh_interval_s`, forgets its idle items (`stream.item_idle_ttl_s`)
    and starts background walks from the others. With replicated walks
    (`stream.walk_stage`), each call hands the walks it started and the transitions it
    counted to every walk task (`WALK_WORK`); routed, it steps walks where their item's counts
    live (any shard of this task, once decoded) and sends the others on."""

    def __init__(
        self,
        stream: StreamSettings,
        walk_length: int,
        half_life_s: float | None,
        seed: int,
        walks: bool,
    ) -> None:
        self.stream = stream
        self.walk_length = walk_length
        self.half_life_s = half_life_s
        self.seed = seed
        self.walks_per_weight = stream.walks_per_weight if walks else 0.0
        self.refresh_per_hour = stream.refresh_walks_per_weight_hour if walks else 0.0
        self.hand_over = walks and stream.walk_stage == "replicated"
        self.idle_ttl_s = stream.item_idle_ttl_s

    def open(self, runtime_context: RuntimeContext) -> None:
        self.items = runtime_context.get_map_state(
            MapStateDescriptor("items", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )
        self.refresh_due = runtime_context.get_state(
            ValueStateDescriptor("refresh_due", Types.LONG())
        )
        self.sweep_as_of = runtime_context.get_state(
            ValueStateDescriptor("sweep_as_of", Types.LONG())
        )
        # Decoded items of this task; a restarted task starts empty and reads its state.
        self.decoded: ItemCache[_Item] = ItemCache(
            self.stream.item_cache_neighbours, lambda item: 1 + len(item[0])
        )
        self.sightings = SightingFilter(2 * self.stream.item_neighbours, _SIGHTING_FILTER_ITEMS)
        task, _ = _subtask(runtime_context)
        self.rng = random.Random(f"walks:{self.seed}:{task}")
        metrics = runtime_context.get_metrics_group()
        self.transitions = _Tally(metrics.counter("transitions"))
        self.steps = _Tally(metrics.counter("walk_steps"))
        self.finished = _Tally(metrics.counter("walks_finished"))
        self.forgotten = _Tally(metrics.counter("items_forgotten"))

    def close(self) -> None:
        for tally in (self.transitions, self.steps, self.finished, self.forgotten):
            tally.flush()

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        kind, payload = value
        shard = int(ctx.get_current_key())
        if kind == WALKS:
            yield from self._advance(shard, decode_batches(payload), {})
            return
        items: dict[int, ItemNeighbours] = {}
        updated: dict[int, _StoredItem] = {}
        started: dict[int, list[Walk]] = {}
        sightings: list[str] = []
        counted = 0
        for src, transitions in parse_transitions(payload).items():
            neighbours, starter = self._item(src)
            walks, new = add_transitions(
                src, transitions, neighbours, starter, self.walks_per_weight, self.half_life_s
            )
            if new:
                sightings += [f"{i} {seen}" for i, seen in self.sightings.new_edges(src, new)]
            updated[src] = self._updated(src, neighbours, starter)
            items[src] = neighbours
            counted += len(transitions)
            if self.stream.emit_counts:
                yield from _count_updates(src, transitions, neighbours, ITEM_STAGE)
            if walks:
                started[src] = walks
        _put_all(self.items, updated)  # one call into the JVM per batch, not one per item
        self.transitions.inc(counted)
        if sightings:
            yield SIGHTINGS, JOINED.join(sightings)
        if self.hand_over:
            yield WALK_WORK, _walk_work(started, payload)
        elif started:
            yield from self._advance(shard, started, items)
        if self._timed() and self.refresh_due.value() is None:
            self._schedule_refresh(ctx.timer_service())

    def _timed(self) -> bool:
        return self.refresh_per_hour > 0 or self.idle_ttl_s > 0

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        """The shard's idle items are forgotten, then each of the others starts background
        walks in proportion to its whole weight (decayed to the watermark, or to the item's
        newest transition before there is one)."""
        self.refresh_due.clear()
        if not self._timed():  # both off since the timer was set: let it lapse
            return
        stored = dict(self.items.items())  # read once for the sweep and the refresh
        forgotten = self._idle(stored) if self.idle_ttl_s > 0 else []
        for item in forgotten:
            if self.stream.emit_counts:
                yield from _forgotten_counts(item, self._item(item, stored[item])[0], ITEM_STAGE)
            del stored[item]
            self.items.remove(item)
            self.decoded.remove(item)
        if forgotten:
            self.sightings.forget(forgotten)
            # a sighting of no neighbour: the items topic's counts forget the item too
            yield SIGHTINGS, JOINED.join(f"{item} -" for item in forgotten)
        self.forgotten.inc(len(forgotten))
        started, items = self._refresh(ctx, stored) if self.refresh_per_hour > 0 else ({}, {})
        if self.hand_over and (started or forgotten):
            yield WALK_WORK, _walk_work(started, "", forgotten)
        elif started:
            yield from self._advance(int(ctx.get_current_key()), started, items)
        self._schedule_refresh(ctx.timer_service())

    def _idle(self, stored: dict[int, _StoredItem]) -> list[int]:
        """The shard's items idle for `stream.item_idle_ttl_s`, judged against the newest
        transition the shard had counted by the previous sweep, not by this one: transitions
        reach a shard in batches whose event times lag one another (a replay's watermark
        moves fast), and any still on its way at the previous sweep has been counted since."""
        newest = {item: newest_event_time for item, (*_, newest_event_time) in stored.items()}
        idle = idle_items(newest, self.sweep_as_of.value(), self.idle_ttl_s)
        if newest:
            self.sweep_as_of.update(max(newest.values()))
        return idle

    def _refresh(
        self, ctx: KeyedProcessFunction.OnTimerContext, stored: dict[int, _StoredItem]
    ) -> tuple[dict[int, list[Walk]], dict[int, ItemNeighbours]]:
        """Background walks started at each item of the shard (`stored`, as its state holds
        them), and the items read."""
        interval_s = self.stream.refresh_interval_s
        watermark = ctx.timer_service().current_watermark() // _MS
        items: dict[int, ItemNeighbours] = {}
        started: dict[int, list[Walk]] = {}
        updated: dict[int, _StoredItem] = {}
        for item, value in stored.items():
            neighbours, starter = self._item(item, value)
            now = max(watermark, starter.newest_event_time)
            weight = neighbours.weight_at(now, self.half_life_s)
            starts = starter.on_refresh(weight, self.refresh_per_hour, interval_s)
            updated[item] = self._updated(item, neighbours, starter)
            items[item] = neighbours
            if starts:
                started[item] = [Walk((item,), starter.newest_event_time)] * starts
        _put_all(self.items, updated)
        return started, items

    def _item(self, item: int, stored: _StoredItem | None = None) -> _Item:
        decoded = self.decoded.get(item)
        if decoded is not None:
            return decoded
        stored = self.items.get(item) if stored is None else stored
        if stored is None:
            return ItemNeighbours(), WalkStarter()
        neighbours, credit, newest_event_time = stored
        # Kept for the next batch or walk that reaches it (a walk's step table with it).
        decoded = ItemNeighbours.from_bytes(neighbours), WalkStarter(credit, newest_event_time)
        self.decoded.put(item, decoded)
        return decoded

    def _updated(self, item: int, neighbours: ItemNeighbours, starter: WalkStarter) -> _StoredItem:
        """Keep the changed item decoded; return it as it is stored."""
        self.decoded.put(item, (neighbours, starter))
        return neighbours.to_bytes(), starter.credit, starter.newest_event_time

    def _schedule_refresh(self, timers: Any) -> None:
        due = int(timers.current_processing_time()) + self.stream.refresh_interval_s * _MS
        timers.register_processing_time_timer(due)
        self.refresh_due.update(due)

    def _advance(
        self, shard: int, walks: dict[int, list[Walk]], items: dict[int, ItemNeighbours]
    ) -> Iterator[Any]:
        """Step walks as far as the items at hand take them: this shard's, and those of the
        task's other shards that it holds decoded (they are right: the task is their only
        writer), so a walk crosses Kafka only to an item it would have to read from another
        key's state. `items` caches the counts this call has already read."""
        shards = self.stream.item_shards

        def hops_here(item: int) -> HopTable | None:
            neighbours = items.get(item)
            if neighbours is None:
                if item % shards == shard:
                    neighbours = self._item(item)[0]
                else:
                    decoded = self.decoded.get(item)
                    if decoded is None:
                        return None
                    neighbours = decoded[0]
                items[item] = neighbours
            return neighbours.hop_table()

        advanced = advance_walks(walks, hops_here, shards, self.walk_length, self.rng)
        self.steps.inc(advanced.steps)
        self.finished.inc(len(advanced.done))
        # One side-output record per call for each, split in the JVM (`JOINED`): a record
        # per sample or hop message cost more than the steps.
        if advanced.done:
            samples = (walk_sample(w.path, w.newest_event_time) for w in advanced.done)
            yield SAMPLES, JOINED.join(samples)
        if advanced.outbound:
            yield HOPS, JOINED.join(encode_batch(o, b) for o, b in advanced.outbound.items())


def _count_updates(
    src: int, transitions: list[tuple[int, int]], neighbours: ItemNeighbours, holder: str
) -> Iterator[tuple[OutputTag, str]]:
    """A count update (`stream.emit_counts`) for each next item of `transitions` out of `src`,
    once each, in order, as `neighbours` counts it now."""
    for dst in dict.fromkeys(dst for dst, _ in transitions):
        yield (
            COUNTS,
            count_update(src, dst, neighbours.weight_of(dst), neighbours.reference, holder),
        )


def _forgotten_counts(
    item: int, neighbours: ItemNeighbours, holder: str
) -> Iterator[tuple[OutputTag, str]]:
    """A count update of weight 0 (`stream.emit_counts`) for each edge of a forgotten item."""
    for dst in neighbours.weights:
        yield COUNTS, count_update(item, dst, 0.0, None, holder)


def _walk_work(
    started: dict[int, list[Walk]], transitions: str, forgotten: Sequence[int] = ()
) -> str:
    """Walks just started (each a one-item path), the transitions counted and the items
    forgotten, for the walk tasks."""
    starts: Counter[tuple[int, int]] = Counter()
    for item, walks in started.items():
        for walk in walks:
            starts[item, walk.newest_event_time] += 1
    return walk_work(starts, transitions, forgotten)


def step_tables_state() -> MapStateDescriptor:
    """The walk tasks' broadcast state: each item's step table (`ItemNeighbours.to_bytes`)."""
    return MapStateDescriptor("step_tables", Types.LONG(), Types.PICKLED_BYTE_ARRAY())


class WalkFunction(BroadcastProcessFunction):  # type: ignore[misc]
    """A walk task (`stream.walk_stage` replicated): every item's step table (`StepTables`),
    rebuilt from the transitions each item-stage call counted, in its order, and kept in
    broadcast state, which each task checkpoints; and the walks of its share (`walks_here`),
    stepped to their end here, first-order or Node2vec. No walk leaves the task.

    Every record arrives on the broadcast side, so a call's walks always meet the counts of
    the transitions that started them; the other input carries nothing."""

    def __init__(
        self,
        walk_length: int,
        half_life_s: float | None,
        p: float,
        q: float,
        seed: int,
        emit_counts: bool,
    ) -> None:
        self.walk_length = walk_length
        self.half_life_s = half_life_s
        self.p, self.q = p, q
        self.seed = seed
        self.emit_counts = emit_counts

    def open(self, runtime_context: RuntimeContext) -> None:
        self.task, self.tasks = _subtask(runtime_context)
        self.rng = random.Random(f"walks:{self.seed}:{self.task}")
        self.holder = walk_task_holder(self.task)
        # The broadcast state and the tables read from it, on the first call (the state is
        # only at hand in a call). The handle is kept: the operator has one for its life, and
        # each asking converts the descriptor into the JVM's.
        self.state: Any = None
        self.tables = StepTables(self.half_life_s)
        metrics = runtime_context.get_metrics_group()
        self.steps = _Tally(metrics.counter("walk_steps"))
        self.finished = _Tally(metrics.counter("walks_finished"))
        self.items_held = 0
        metrics.gauge("step_table_items", lambda: self.items_held)

    def close(self) -> None:
        for tally in (self.steps, self.finished):
            tally.flush()

    def process_element(self, value: Any, ctx: BroadcastProcessFunction.ReadOnlyContext) -> None:
        raise AssertionError("the walk tasks' other input carries no record")

    def process_broadcast_element(
        self, value: str, ctx: BroadcastProcessFunction.Context
    ) -> Iterator[Any]:
        state, tables = self.state, self.tables
        if state is None:
            state = self.state = ctx.get_broadcast_state(step_tables_state())
            tables.load(state.items())
        starts, transitions, forgotten = read_walk_work(value)
        if transitions:
            changed = tables.apply(transitions)
            _put_all(state, {item: neighbours.to_bytes() for item, neighbours in changed.items()})
            if self.emit_counts:
                for src, batch in transitions.items():
                    yield from _count_updates(src, batch, changed[src], self.holder)
        for item in forgotten:
            if self.emit_counts:
                yield from _forgotten_counts(item, tables.get(item), self.holder)
            state.remove(item)
        tables.forget(forgotten)
        self.items_held = len(tables)
        walks: dict[int, list[Walk]] = {}
        for item, event_time, count in walks_here(starts, self.task, self.tasks):
            walks.setdefault(item, []).extend([Walk((item,), event_time)] * count)
        if not walks:
            return
        advanced = advance_walks(
            walks, tables.hops_here, 1, self.walk_length, self.rng, p=self.p, q=self.q
        )
        self.steps.inc(advanced.steps)
        self.finished.inc(len(advanced.done))
        yield JOINED.join(walk_sample(w.path, w.newest_event_time) for w in advanced.done)
