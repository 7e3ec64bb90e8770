"""The streaming job's graph: Kafka ratings -> per-user sequences -> per-item counts and walks.

```
ratings (key = user) --keyBy user--> UserFunction --> dead letters, late events
        transitions --keyBy item--+--> ItemFunction --> samples, counts (debug)
walk.hops --keyBy item------------+        | hops --> walk.hops
                                           | new edges --keyBy item, first 2N (JVM)-->
                                           SightingFunction --> items
```

Keying happens in the JVM (Flink's own key selector on field 0 of a Row(key, payload)), not in
a Python key selector, which would cost one more Python call per record. Filtering by rating
stays inside the per-user function, so every record is validated by the one validator.
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.data_stream import KeyedStream
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StreamTableEnvironment

from streaming.config import Settings
from streaming.job.functions import (
    COUNTS,
    DEAD_LETTER,
    EDGE_TYPE,
    HOPS,
    ITEM_INPUT_TYPE,
    LATE,
    RATING_TYPE,
    SAMPLES,
    ItemFunction,
    SightingFunction,
    UserFunction,
)
from streaming.job.kafka_io import text_sink
from streaming.job.positions import Position

__all__ = ["build_job"]


def _key_by_first_field(stream: DataStream, payload_type: Any) -> KeyedStream:
    """Key a Row(key: STRING, payload) stream in the JVM; functions see the payload."""
    gateway = get_gateway()
    j_keyed = stream._j_data_stream.keyBy(
        gateway.jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, payload_type, stream)


def _day_to_second(seconds: int) -> str:
    """A SQL DAY TO SECOND literal: plain SECOND intervals stop at 99."""
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"{days} {hour:02}:{minute:02}:{second:02}"


def _options(options: dict[str, str]) -> str:
    return ",\n".join(f"'{key}' = '{value}'" for key, value in options.items())


def _ratings(
    t_env: StreamTableEnvironment, settings: Settings, start: Position, until: Position | None
) -> DataStream:
    kafka = settings.kafka
    stream = settings.stream
    options = {
        "connector": "kafka",
        "topic": kafka.topics.ratings,
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "properties.group.id": stream.group_id,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        **start.startup_options(),
        **(until.bounded_options() if until is not None else {}),
    }
    # Event time for watermarks comes from a quick JVM read of one JSON field. A record
    # without a valid event time gets time 0: it neither holds the watermark back nor pushes
    # it into the future (a millisecond time would), and it is rejected downstream anyway.
    seconds = "TRY_CAST(JSON_VALUE(CAST(v AS STRING), '$.event_time') AS BIGINT)"
    latest = settings.events.max_event_time
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE ratings (
            k STRING,
            v BYTES,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            ts AS TO_TIMESTAMP_LTZ(
                CASE WHEN {seconds} BETWEEN 0 AND {latest} THEN {seconds} ELSE 0 END, 0),
            WATERMARK FOR ts AS ts - INTERVAL '{_day_to_second(stream.out_of_orderness_s)}'
                DAY TO SECOND
        ) WITH ({_options(options)})"""
    )
    table = t_env.sql_query("SELECT COALESCE(k, ''), ROW(`partition`, `offset`, v) FROM ratings")
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), RATING_TYPE]))


def _hops(t_env: StreamTableEnvironment, settings: Settings) -> DataStream:
    kafka = settings.kafka
    options = {
        "connector": "kafka",
        "topic": kafka.topics.walk_hops,
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "properties.group.id": f"{settings.stream.group_id}-hops",
        "scan.startup.mode": "latest-offset",  # on restore, the checkpointed offsets win
        "value.format": "raw",
    }
    t_env.execute_sql(f"CREATE TEMPORARY TABLE hops (v STRING) WITH ({_options(options)})")
    table = t_env.sql_query(
        "SELECT JSON_VALUE(v, '$.item'), ROW(1, CAST(0 AS BIGINT), CAST(0 AS BIGINT), v) FROM hops"
    )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]))


def _first_sightings(t_env: StreamTableEnvironment, edges: DataStream, limit: int) -> DataStream:
    """Each item's first 2 x `limit` sightings, chosen in the JVM. An item sights a neighbour
    at most twice (once per direction of their edge), so these hold its first `limit`
    neighbours, and the Python function sees a bounded number of records per item instead of
    two per new edge of the whole graph.

    A running count over processing time, not ROW_NUMBER's Top-N: the planner takes any Top-N
    for an updating result, which to_append_stream refuses; an OVER count is insert-only."""
    schema = (
        Schema.new_builder()
        .column("f0", "STRING")
        .column("f1", "ROW<f0 BIGINT>")
        .column_by_expression("seen", "PROCTIME()")
        .build()
    )
    t_env.create_temporary_view("new_edges", t_env.from_data_stream(edges, schema))
    table = t_env.sql_query(
        f"""SELECT f0, f1 FROM (
            SELECT f0, f1, COUNT(*) OVER (
                PARTITION BY f0 ORDER BY seen ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS n FROM new_edges
        ) WHERE n <= {2 * limit}"""
    )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), EDGE_TYPE]))


def build_job(
    env: StreamExecutionEnvironment,
    settings: Settings,
    start: Position,
    until: Position | None,
) -> None:
    """Add the job to `env`. A bounded replay (`until`) rebuilds state and samples no walks:
    walks travel through a feedback topic, which never ends. User-sequence samples, when on,
    are written in both."""
    walks = until is None
    t_env = StreamTableEnvironment.create(env)
    table_config = t_env.get_config()
    table_config.set("table.exec.source.idle-timeout", f"{settings.stream.idle_timeout_s} s")
    # Stable ids for the operators SQL makes (the Kafka sources' offsets live there), as the
    # .uid() calls below give ours: a checkpoint then restores into a graph that gained an
    # output, as after an upgrade or a settings change.
    table_config.set("table.exec.uid.generation", "ALWAYS")

    def write(stream: DataStream, uid: str, topic: str, exactly_once: bool = False) -> None:
        stream.sink_to(text_sink(settings, topic, exactly_once)).uid(uid).name(uid)

    topics = settings.kafka.topics
    users = (
        _key_by_first_field(_ratings(t_env, settings, start, until), RATING_TYPE)
        .process(
            UserFunction(settings.events, settings.stream.user_sequence_length),
            output_type=Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]),
        )
        .uid("users")
        .name("users")
    )
    write(users.get_side_output(DEAD_LETTER), "dead-letter-sink", topics.dead_letter, True)
    write(users.get_side_output(LATE), "late-sink", topics.late, True)
    if settings.stream.user_sequence_length:
        write(users.get_side_output(SAMPLES), "sequence-samples-sink", topics.samples)

    item_inputs = users.union(_hops(t_env, settings)) if walks else users
    items = (
        _key_by_first_field(item_inputs, ITEM_INPUT_TYPE)
        .process(
            ItemFunction(settings.stream, settings.walks.length, settings.training.seed, walks),
            output_type=Types.ROW([Types.STRING(), EDGE_TYPE]),
        )
        .uid("items")
        .name("items")
    )
    if walks:
        write(items.get_side_output(SAMPLES), "walk-samples-sink", topics.samples)
        write(items.get_side_output(HOPS), "walk-hops-sink", topics.walk_hops)
    if settings.stream.emit_counts:
        write(items.get_side_output(COUNTS), "counts-sink", topics.counts, True)

    limit = settings.stream.item_neighbours
    sightings = (
        _key_by_first_field(_first_sightings(t_env, items, limit), EDGE_TYPE)
        .process(SightingFunction(limit), output_type=Types.STRING())
        .uid("sightings")
        .name("sightings")
    )
    write(sightings, "items-sink", topics.items, True)
