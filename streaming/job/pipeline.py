"""The streaming job's graph: Kafka ratings -> ordered transitions -> per-item counts and walks.

```
ratings --(SQL) route: compact & high ----+--keyBy user--> UserTransitions (Java): on time:
                       other --> RecordFunction --+      order by (event time, item), pair with
                                 | (valid & high)        the previous item --> transitions
                                 +--> dead letters       late --> LateFunction --> late
transitions --batch per shard (SQL)--keyBy shard--> ItemFunction --> counts
                 new edges' sightings, while the item knows < N others (Java) +--> items
  replicated walks (`stream.walk_stage`, default):
    ItemFunction --walks started + transitions counted, broadcast--> WalkFunction (each task:
                   every item's step table; steps its share of the walks) --> samples
  routed walks:
    walk.hops --(optional batch, SQL)--keyBy shard--> ItemFunction --> samples
                                     walks it cannot step --> walk.hops
transitions --(SQL)--> samples: one per transition (`stream.transition_samples`)
UserTransitions --(SQL)--> users: a user's last N items when they change (`users.enabled`)
```

Per-event work runs in the JVM: a record in the producer's compact form is checked by a Java
function, ordered and paired with its user's previous item by another, without a Python call
(one Python call per event caps a job at a fraction of a pure-SQL job's rate). Every other
record goes to the one Python validator. Keying happens in the JVM too
(Flink's key selector on field 0 of a Row(key, payload)), not in a Python key selector.
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Types
from pyflink.common.serialization import SerializationSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaTopicPartition,
)
from pyflink.datastream.data_stream import KeyedStream
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StreamTableEnvironment
from pyflink.util.java_utils import to_jarray

from streaming.config import EventSettings, Settings
from streaming.job.environment import under_flink_run
from streaming.job.functions import (
    COUNTS,
    DEAD_LETTER,
    HIGH_RATING_TYPE,
    HOPS,
    ITEM_INPUT_TYPE,
    JOINED,
    RECORD_TYPE,
    SAMPLES,
    SIGHTINGS,
    TRANSITIONS,
    WALK_WORK,
    WALKS,
    ItemFunction,
    LateFunction,
    RecordFunction,
    WalkFunction,
    step_tables_state,
)
from streaming.job.kafka_io import text_sink
from streaming.job.positions import Position
from streaming.kafka_clients import flink_table_options, java_client_properties
from streaming.records import (
    HOP_BATCH_SQL,
    HOP_ONE_SQL,
    HOP_SHARD_SQL,
    SIGHTING_SQL,
    TRANSITION_BATCH_SQL,
    TRANSITION_SAMPLE_SQL,
    USER_ITEMS_SQL,
)

__all__ = ["build_job", "walk_task_count"]


def _key_by_first_field(stream: DataStream, payload_type: Any) -> KeyedStream:
    """Key a Row(key: STRING, payload) stream in the JVM; functions see the payload."""
    gateway = get_gateway()
    j_keyed = stream._j_data_stream.keyBy(
        gateway.jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, payload_type, stream)


def _literal(value: str) -> str:
    """A SQL string literal: a quote inside (as in a password) doubled."""
    return "'" + value.replace("'", "''") + "'"


def _options(options: dict[str, str]) -> str:
    return ",\n".join(f"{_literal(key)} = {_literal(value)}" for key, value in options.items())


_COMPACT_EVENT = "walkstream_compact_event"
"""The Java function (streaming/runtime/java, built by `make setup`) that reads a valid record
in the producer's compact form: its fields as a ROW, or NULL for any other record, which the
Python validator then judges (it alone names reasons)."""
_MS = 1000


def _java_rules(rules: EventSettings) -> Any:
    """The event rules for the job's Java functions (`EventRules`)."""
    return get_gateway().jvm.io.walkstream.EventRules(
        float(rules.min_rating),
        float(rules.max_rating),
        rules.max_event_time,
        rules.max_record_bytes,
        rules.max_ahead_s,
    )


def _register_functions(t_env: StreamTableEnvironment, rules: EventSettings) -> None:
    function = get_gateway().jvm.io.walkstream.CompactEvent(_java_rules(rules))
    t_env._j_tenv.createTemporarySystemFunction(_COMPACT_EVENT, function)


_HIGH, _LOW, _OTHER = range(3)
_PARSED_TYPE = Types.ROW_NAMED(
    ["compact", "k", "partition", "offset", "received", "v", "user_id", "item_id", "rating",
     "event_time"],
    [Types.BOOLEAN(), Types.STRING(), Types.INT(), Types.LONG(), Types.LONG(),
     Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.LONG(), Types.LONG(), Types.DOUBLE(),
     Types.LONG()],
)  # fmt: skip
"""A ratings record read once: whether it is a valid one in the compact form, and its fields
if so. It stays in the JVM (no Python function reads it)."""


_TRANSITION_ROW_TYPE = Types.ROW_NAMED(["user_id", "src", "dst", "event_time"], [Types.LONG()] * 4)
"""(user, previous item, item, event time) of a user's transition, as `UserTransitions` emits
it."""


def _double(value: float) -> str:
    """A DOUBLE literal: a plain 3.5 is a DECIMAL, and comparing a DOUBLE column with it
    converts the column for each row (a profile found 11% of the source's thread there)."""
    return f"CAST({value!r} AS DOUBLE)"


def _offsets(position: Position, topic: str) -> KafkaOffsetsInitializer:
    """A start or stop position as the Kafka source's offsets initializer."""
    if position.kind == "earliest":
        return KafkaOffsetsInitializer.earliest()
    if position.kind == "latest":
        return KafkaOffsetsInitializer.latest()
    if position.kind == "committed":
        return KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    if position.kind == "timestamp":
        assert position.timestamp_ms is not None
        return KafkaOffsetsInitializer.timestamp(position.timestamp_ms)
    return KafkaOffsetsInitializer.offsets(
        {KafkaTopicPartition(topic, partition): offset for partition, offset in position.offsets}
    )


def _ratings_source(
    env: StreamExecutionEnvironment, settings: Settings, start: Position, until: Position | None
) -> DataStream:
    """The ratings topic's records as `RatingRecords` rows, with event time and watermarks
    from `RatingWatermarks`: only accepted records move it, and a partition that is catching
    up is not taken for an idle one. A bounded replay uses no idleness: a partition that ends
    stops holding the watermark back."""
    kafka = settings.kafka
    stream = settings.stream
    functions = get_gateway().jvm.io.walkstream
    builder = (
        get_gateway()
        .jvm.org.apache.flink.connector.kafka.source.KafkaSource.builder()
        .setBootstrapServers(kafka.bootstrap_servers)
        .setTopics(to_jarray(get_gateway().jvm.String, [kafka.topics.ratings]))
        .setGroupId(stream.group_id)
        .setDeserializer(functions.RatingRecords())
        .setStartingOffsets(_offsets(start, kafka.topics.ratings)._j_initializer)
    )
    for key, value in java_client_properties(kafka).items():
        builder = builder.setProperty(key, value)
    if until is not None:
        builder = builder.setBounded(_offsets(until, kafka.topics.ratings)._j_initializer)
    idle_ms = 0 if until is not None else stream.idle_timeout_s * _MS
    behind_idle_ms = 0 if until is not None else stream.behind_idle_timeout_s * _MS
    watermarks = functions.RatingWatermarks(
        _java_rules(settings.events), stream.out_of_orderness_s * _MS, idle_ms, behind_idle_ms
    )
    j_stream = (
        env._j_stream_execution_environment.fromSource(builder.build(), watermarks, "ratings")
        .uid("ratings-source")
        .name("ratings")
    )
    return DataStream(j_stream)


def _ratings(
    env: StreamExecutionEnvironment,
    t_env: StreamTableEnvironment,
    settings: Settings,
    start: Position,
    until: Position | None,
) -> None:
    """Register `routed`: each ratings record with its route and, when the JVM accepted it,
    its fields."""
    rules = settings.events
    records = (
        Schema.new_builder()
        .column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)")
        .watermark("rowtime", "SOURCE_WATERMARK()")
        .build()
    )
    t_env.create_temporary_view(
        "ratings", t_env.from_data_stream(_ratings_source(env, settings, start, until), records)
    )
    # Materialized by the conversion to a stream: Flink inlines a column wherever a query
    # uses it, so the route below, on these columns, would otherwise read the record again
    # for each use.
    parsed = t_env.sql_query(
        f"""SELECT e IS NOT NULL, k, `partition`, `offset`, received, v,
            e.user_id, e.item_id, e.rating, e.event_time
        FROM (SELECT COALESCE(k, '') AS k, `partition`, `offset`, received, v,
            {_COMPACT_EVENT}(k, v, received) AS e FROM ratings)"""
    )
    # A table from a stream passes its watermarks on only when its schema asks for them.
    schema = (
        Schema.new_builder()
        .column_by_expression("ts", "TO_TIMESTAMP_LTZ(event_time, 0)")
        .watermark("ts", "SOURCE_WATERMARK()")
        .build()
    )
    stream = t_env.to_append_stream(parsed, _PARSED_TYPE)
    t_env.create_temporary_view("parsed", t_env.from_data_stream(stream, schema))
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW routed AS SELECT CASE
                WHEN NOT compact THEN {_OTHER}
                WHEN rating < {_double(rules.high_rating)} THEN {_LOW}
                ELSE {_HIGH} END AS route,
            k, `partition`, `offset`, received, v, user_id, item_id, rating, event_time
        FROM parsed"""
    )


def _transitions(
    t_env: StreamTableEnvironment, checked: DataStream, recent_items: int, idle_ttl_s: int
) -> tuple[DataStream, DataStream, DataStream]:
    """Each user's transitions, in (event time, item) order, the valid high ratings that
    arrived behind the watermark, and each user's last `recent_items` items whenever they
    change (none with 0): one Java function keyed by user (`UserTransitions`) for all three,
    on the watermark its timers fire on, so every rating is paired or reported. A user idle
    for `idle_ttl_s` of event time is forgotten (0: never).

    Keyed by user, so the ordering spreads over every task (a SQL sort by event time is one
    task for all users). Lateness is judged on the watermark the timers fire on, not on a
    source task's own, which lags the job's once the task is idle and would let a rating
    judged on time be dropped without a trace."""
    compact = t_env.to_append_stream(
        t_env.sql_query(
            "SELECT user_id, item_id, rating, event_time, `partition`, `offset` FROM routed "
            f"WHERE route = {_HIGH}"
        ),
        HIGH_RATING_TYPE,
    )
    fields = HIGH_RATING_TYPE.get_field_names()
    functions = get_gateway().jvm.io.walkstream
    pairing = functions.UserTransitions(
        fields.index("item_id"),
        fields.index("event_time"),
        HIGH_RATING_TYPE.get_java_type_info(),
        recent_items,
        idle_ttl_s,
    )
    j_transitions = (
        compact.union(checked)
        ._j_data_stream.keyBy(
            functions.UserTransitions.byUser(fields.index("user_id")),
            Types.LONG().get_java_type_info(),
        )
        .process(pairing, _TRANSITION_ROW_TYPE.get_java_type_info())
        .uid("user-transitions")
        .name("user-transitions")
    )
    late = DataStream(j_transitions.getSideOutput(pairing.lateTag()))
    users = DataStream(j_transitions.getSideOutput(pairing.usersTag()))
    return late, DataStream(j_transitions), users


def _transition_rows(t_env: StreamTableEnvironment, transitions: DataStream, bounded: bool) -> None:
    """Register `transition_rows`, read by the edges' and the item batches' queries (one
    conversion: each would otherwise re-read the topic): the transitions with their
    processing time, `seen`, and in a bounded replay `ingested`, the same time as an event
    time. Windows on `seen` never fire once a bounded input has ended; on `ingested`, the end's
    final watermark fires them all."""
    schema = (
        Schema.new_builder()
        .column("user_id", "BIGINT")
        .column("src", "BIGINT")
        .column("dst", "BIGINT")
        .column("event_time", "BIGINT")
        .column_by_expression("seen", "PROCTIME()")
    )
    if bounded:
        # Behind by a second, not a millisecond: a row of the millisecond the watermark was
        # taken in, or after a small step back of the wall clock, is not late (and dropped).
        schema = schema.column_by_expression(
            "ingested", "CAST(CURRENT_TIMESTAMP AS TIMESTAMP_LTZ(3))"
        ).watermark("ingested", "ingested - INTERVAL '1' SECOND")
    t_env.create_temporary_view(
        "transition_rows", t_env.from_data_stream(transitions, schema.build())
    )


def _item_batches(t_env: StreamTableEnvironment, settings: Settings, bounded: bool) -> DataStream:
    """Each shard's transitions in batches of `stream.batch_ms` (`TRANSITION_BATCH_SQL`):
    one Python call per batch instead of one per transition."""
    stream = settings.stream
    time = "ingested" if bounded else "seen"
    table = t_env.sql_query(
        f"""SELECT CAST(MOD(src, {stream.item_shards}) AS STRING),
            ROW({TRANSITIONS}, {TRANSITION_BATCH_SQL})
        FROM TABLE(TUMBLE(TABLE transition_rows, DESCRIPTOR({time}),
            INTERVAL '{stream.batch_ms / 1000:.3f}' SECOND))
        GROUP BY MOD(src, {stream.item_shards}), window_start, window_end"""
    )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]))


def _hops(t_env: StreamTableEnvironment, settings: Settings) -> DataStream:
    """The walks reaching each shard, as a JSON array of feedback messages: one message per
    Python call, or with `stream.hop_batch_ms` all of a shard's in that time. Most messages
    carry one or two walks, and a call each costs more than their steps (batching doubled
    the walk steps/s when nearly every hop was a message; it still does at parallelism 2),
    but each hop through the topic waits for its batch's window and one more exchange
    (seconds on the p99 of freshness)."""
    kafka = settings.kafka
    options = {
        "connector": "kafka",
        "topic": kafka.topics.walk_hops,
        **flink_table_options(kafka),
        "properties.group.id": f"{settings.stream.group_id}-hops",
        "scan.startup.mode": "latest-offset",  # on restore, the checkpointed offsets win
        "value.format": "raw",
    }
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE hops (
            v STRING,
            shard AS {HOP_SHARD_SQL},
            seen AS PROCTIME()
        ) WITH ({_options(options)})"""
    )
    if settings.stream.hop_batch_ms == 0:
        table = t_env.sql_query(f"SELECT shard, ROW({WALKS}, {HOP_ONE_SQL}) FROM hops")
    else:
        table = t_env.sql_query(
            f"""SELECT shard, ROW({WALKS}, {HOP_BATCH_SQL})
            FROM TABLE(TUMBLE(TABLE hops, DESCRIPTOR(seen),
                INTERVAL '{settings.stream.hop_batch_ms / 1000:.3f}' SECOND))
            GROUP BY shard, window_start, window_end"""
        )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]))


def _walk_tasks(env: StreamExecutionEnvironment, items: DataStream, settings: Settings) -> Any:
    """The walk tasks (`stream.walk_stage` replicated): every item-stage call's walk work,
    broadcast to each of them (`WalkFunction`). Their output is the walk samples, one record
    per call (`JOINED`), and, with `stream.emit_counts`, their step tables' count updates."""
    work = items.get_side_output(WALK_WORK).broadcast(step_tables_state())
    # A broadcast input needs a non-broadcast one beside it; the walk work must not be it, or
    # a walk could reach a task before the transitions that started it.
    nothing = env.from_collection([], type_info=Types.STRING())
    walks = settings.walks
    function = WalkFunction(
        walks.length,
        walks.half_life_s,
        walks.p,
        walks.q,
        settings.training.seed,
        settings.stream.emit_counts,
    )
    # The step tables are of the half-life they were counted with: another one is refused.
    uid = f"walk-tasks-v1-step-tables{_decay(settings)}"
    tasks = walk_task_count(settings, in_mini_cluster=not under_flink_run())
    return (
        nothing.connect(work)
        .process(function, output_type=Types.STRING())
        .uid(uid)
        .name(uid)
        .set_parallelism(tasks)
    )


def walk_task_count(settings: Settings, in_mini_cluster: bool) -> int:
    """How many walk tasks step replicated walks: `stream.walk_tasks`, or by default one per
    Python interpreter that can run at once. In thread mode a TaskManager's tasks share its
    one interpreter, so in the local mini-cluster (one TaskManager) a second walk task would
    only repeat the first's work on the step tables, in turns with it; elsewhere
    `flink.parallelism`."""
    if settings.stream.walk_tasks:
        return settings.stream.walk_tasks
    if in_mini_cluster and settings.flink.python_execution_mode == "thread":
        return 1
    return settings.flink.parallelism


def _decay(settings: Settings) -> str:
    """The half-life in the item operator's id (none without decay)."""
    half_life = settings.walks.half_life_s
    return "" if half_life is None else f"-half-life-{half_life!r}s"


def _sightings(t_env: StreamTableEnvironment, joined: DataStream, limit: int) -> DataStream:
    """The items topic, written by the JVM: one record per sighting of a neighbour by an
    item, with how often the item has seen it so far (once per direction of their edge, so
    1 or 2), while the item knows fewer than `limit` other items. Merged per item (later
    counts win), an item's records hold its first `limit` neighbours. No Python call: one per
    sighting would cost about as much as the transitions themselves. The sightings
    come from the item function (`SIGHTINGS`), which finds each new edge in the counts it
    holds, and sends only those that can still count (`SightingFilter`); an item it forgot
    comes as a sighting of no neighbour, after which the item's next sighting is its first.

    Counted per item by `ItemSightings` (Java, keyed by item), which keeps an item's first
    `2 * limit` sightings at most, and forgets a forgotten item's."""
    t_env.create_temporary_view("sighting_batches", t_env.from_data_stream(joined))
    split = t_env.sql_query(
        f"""SELECT CAST(SPLIT_INDEX(s, ' ', 0) AS BIGINT) AS item_id,
            TRY_CAST(SPLIT_INDEX(s, ' ', 1) AS BIGINT) AS neighbour
        FROM sighting_batches CROSS JOIN UNNEST(SPLIT(f0, CHR({ord(JOINED)}))) AS t (s)"""
    )
    rows = t_env.to_append_stream(split, Types.ROW([Types.LONG(), Types.LONG()]))
    functions = get_gateway().jvm.io.walkstream
    counted = Types.ROW_NAMED(["item_id", "neighbour", "times", "n"], [Types.LONG()] * 4)
    j_counted = (
        rows._j_data_stream.keyBy(
            functions.ItemSightings.byItem(), Types.LONG().get_java_type_info()
        )
        .process(functions.ItemSightings(limit), counted.get_java_type_info())
        .uid("item-sightings")
        .name("item-sightings")
    )
    t_env.create_temporary_view("item_sightings", t_env.from_data_stream(DataStream(j_counted)))
    return _strings(t_env, t_env.sql_query(f"SELECT {SIGHTING_SQL} FROM item_sightings"))


def _split(t_env: StreamTableEnvironment, joined: DataStream, name: str) -> DataStream:
    """The records of a stream of `JOINED` ones, split in the JVM."""
    t_env.create_temporary_view(name, t_env.from_data_stream(joined))
    table = t_env.sql_query(
        f"SELECT r FROM {name} CROSS JOIN UNNEST(SPLIT(f0, CHR({ord(JOINED)}))) AS t (r)"
    )
    return _strings(t_env, table)


def _strings(t_env: StreamTableEnvironment, table: Any) -> DataStream:
    """A one-column STRING table as a stream of Java strings, for a text sink. PyFlink 2.2's
    to_append_stream(table, Types.STRING()) generates a cast that does not compile."""
    string_class = get_gateway().jvm.java.lang.Class.forName("java.lang.String")
    return DataStream(t_env._j_tenv.toDataStream(table._j_table, string_class))


_EXEC_NODE_CONTEXT = "org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext"


def _part(t_env: StreamTableEnvironment, name: str) -> None:
    """Give the SQL operators made from here on uids "NAME-N_...", N counted from 1.

    Flink numbers them with one counter for all the job's queries, so each operator's uid
    (and the state a checkpoint keeps under it) would depend on every query made before it:
    a part that only some jobs have (the walk feedback, absent from a bounded replay) or that
    changes with a setting (`stream.hop_batch_ms`) would move the uids of all later parts,
    and their state would no longer restore. A part's uids depend on that part alone. The
    counter sits in the planner's own class loader, and its reset is marked for tests: a
    Flink that drops it fails the job's build (and the uid test), not its restores."""
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()
    loader.loadClass(_EXEC_NODE_CONTEXT).getMethod("resetIdCounter", None).invoke(None, None)
    t_env.get_config().set("table.exec.uid.format", f"{name}-<id>_<transformation>")


def build_job(
    env: StreamExecutionEnvironment,
    settings: Settings,
    start: Position,
    until: Position | None,
) -> None:
    """Add the job to `env`. A bounded replay (`until`) rebuilds state at full speed and samples
    no walks (the trainer's full retrain draws its own from the transitions; routed walks'
    feedback topic would never end). User-sequence samples, when on, are written in both."""
    walks = until is None
    t_env = StreamTableEnvironment.create(env)
    _register_functions(t_env, settings.events)
    table_config = t_env.get_config()
    # No SQL watermark idles (Flink's default): the ratings source judges its partitions'
    # idleness itself, and the replay's `ingested` watermark must not leave a task out, or
    # that task's rows, behind the others' watermark on arrival, would be dropped as late by
    # the batching windows.
    # Stable ids for the operators SQL makes (the Kafka sources' offsets live there), as the
    # .uid() calls below give ours, and per part (`_part`): a checkpoint then restores into a
    # graph that gained an output, as after an upgrade or a settings change.
    table_config.set("table.exec.uid.generation", "ALWAYS")

    def write(stream: DataStream, uid: str, topic: str, exactly_once: bool = False) -> None:
        stream.sink_to(text_sink(settings, topic, exactly_once)).uid(uid).name(uid)

    topics = settings.kafka.topics
    _part(t_env, "ratings")
    _ratings(env, t_env, settings, start, until)
    others = t_env.to_append_stream(
        t_env.sql_query(
            f"SELECT k, ROW(`partition`, `offset`, received, v) FROM routed WHERE route = {_OTHER}"
        ),
        RECORD_TYPE,
    )
    checked = (
        others.process(RecordFunction(settings.events), output_type=HIGH_RATING_TYPE)
        .uid("records")
        .name("records")
    )
    write(checked.get_side_output(DEAD_LETTER), "dead-letter-sink", topics.dead_letter, True)
    _part(t_env, "order")
    recent_items = settings.users.recent_items if settings.users.enabled else 0
    late, transitions, users = _transitions(t_env, checked, recent_items, settings.users.idle_ttl_s)
    late_records = late.process(LateFunction(), output_type=Types.STRING()).uid("late").name("late")
    write(late_records, "late-sink", topics.late, True)
    _part(t_env, "batches")
    _transition_rows(t_env, transitions, bounded=not walks)
    item_inputs = _item_batches(t_env, settings, bounded=not walks)
    replicated = settings.stream.walk_stage == "replicated"
    if walks and not replicated:
        _part(t_env, "hops")
        item_inputs = item_inputs.union(_hops(t_env, settings))
    items = (
        _key_by_first_field(item_inputs, ITEM_INPUT_TYPE)
        .process(
            ItemFunction(
                settings.stream,
                settings.walks.length,
                settings.walks.half_life_s,
                settings.training.seed,
                walks,
            ),
            output_type=Types.STRING(),  # everything it writes goes to side outputs
        )
        # Items live under their shard's key: a restore with another shard count must fail
        # (Flink cannot map this state to an operator), not look for them under wrong keys.
        # So must one with another half-life: the weights are of the one they were made with.
        # The uid also names the state's layout: "weighted", a reference time and float
        # weights of neighbours kept in ascending order; "v3", the operator ids of the parts
        # before it. A checkpoint of another layout then fails to restore instead of being
        # misread. Change the uid whenever the items' state changes layout, and say so in
        # CHANGELOG.md. "-replicated": the walk tasks' step tables were built beside it; a
        # restore that would start them empty (from a routed job's checkpoint) is refused.
        .uid(
            f"items-v3-weighted-{settings.stream.item_shards}-shards{_decay(settings)}"
            + ("-replicated" if replicated else "")
        )
        .name("items")
    )
    _part(t_env, "sightings")
    sightings = _sightings(t_env, items.get_side_output(SIGHTINGS), settings.stream.item_neighbours)
    write(sightings, "items-sink", topics.items, True)
    counts = items.get_side_output(COUNTS)
    if walks and replicated:
        _part(t_env, "walks")
        walk_tasks = _walk_tasks(env, items, settings)
        write(_split(t_env, walk_tasks, "walk_samples"), "walk-samples-sink", topics.samples)
        counts = counts.union(walk_tasks.get_side_output(COUNTS))
    elif walks:
        _part(t_env, "walks")
        samples = _split(t_env, items.get_side_output(SAMPLES), "walk_samples")
        write(samples, "walk-samples-sink", topics.samples)
        hops = _split(t_env, items.get_side_output(HOPS), "walk_hops")
        write(hops, "walk-hops-sink", topics.walk_hops)
    if settings.stream.emit_counts:
        write(counts, "counts-sink", topics.counts, True)
    if settings.stream.transition_samples:
        _part(t_env, "transitions")
        table = t_env.sql_query(f"SELECT {TRANSITION_SAMPLE_SQL} FROM transition_rows")
        write(_strings(t_env, table), "transition-samples-sink", topics.samples)
    if recent_items:
        _part(t_env, "users")
        t_env.create_temporary_view("user_rows", t_env.from_data_stream(users))
        table = t_env.sql_query(f"SELECT {USER_ITEMS_SQL} FROM user_rows")
        user_key = SerializationSchema(get_gateway().jvm.io.walkstream.UserKey())
        _strings(t_env, table).sink_to(text_sink(settings, topics.users, key=user_key)).uid(
            "users-sink"
        ).name("users-sink")
