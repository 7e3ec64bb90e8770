"""The streaming job's graph: Kafka ratings -> ordered user sequences -> item counts and walks.

```
ratings --SQL (JVM, once per event)----------------------------------------------------+
  plain valid record? --no--> validate (Python) --> dead letter | event                  |
  high rating, behind the watermark? --> late record                                     |
  per user and second: sorted distinct items; LAG of the previous second's last item     |
  -> transitions -> per item and `stream.item_batch_s` of event time: items out and in   |
                                                                                        v
walk.hops -----------------------------keyBy item--> ItemFunction (Python, per batch)
                                                     --> samples, walk.hops, items, counts,
                                                         dead letters, late events
```

The per-event hot path runs in Flink SQL: Python costs tens of microseconds per record, the
JVM about one. A record in the exact form `event_to_json` writes (optional spaces allowed),
whose key is its user id and whose values are in range, is valid by construction and never
enters Python; any other record goes through the one validator (`Validate`). The ordering
rules are those of `streaming.core.sequences.UserSequence`: order by event time, ties by
item id, exact duplicates once, no self-loops; the oracle tests hold the two to the same
counts. An event behind the watermark when it arrives is late: a ratings second is released
only once the watermark has passed it, so nothing behind the watermark can still be placed.

Keying for Python happens in the JVM (Flink's own key selector on field 0 of a Row(key,
payload)), not in a Python key selector, which would cost one more Python call per record.
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.data_stream import KeyedStream
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment
from pyflink.table.udf import udf

from streaming.config import Settings
from streaming.job.functions import (
    COUNTS,
    DEAD_LETTER,
    DELTA,
    HOPS,
    ITEM_INPUT_TYPE,
    ITEMS,
    LATE,
    LATE_EVENT,
    REJECTED,
    SAMPLES,
    VALIDATION_TYPE,
    WALKS,
    ItemFunction,
    Validate,
)
from streaming.job.kafka_io import text_sink
from streaming.job.positions import Position

__all__ = ["build_job"]

# The exact form of `event_to_json` (json.dumps with or without spaces): ids without leading
# zeros and at most 18 digits (< 2^63), a plain decimal rating, event time up to 12 digits.
_PLAIN_EVENT = (
    r'^\{"user_id": ?(0|[1-9][0-9]{0,17}), ?"item_id": ?(0|[1-9][0-9]{0,17}), ?'
    r'"rating": ?(0|[1-9][0-9]{0,2})(\.[0-9]{1,6})?, ?"event_time": ?(0|[1-9][0-9]{0,11})\}$'
)


def _plain_field(text: str, index: int) -> str:
    """Field `index` of a record in the plain form, as text (SQL)."""
    value = f"SPLIT_INDEX(SPLIT_INDEX({text}, ',', {index}), ':', 1)"
    if index == 3:
        value = f"SPLIT_INDEX({value}, '}}', 0)"
    return f"TRIM({value})"


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


def _create_ratings(
    t_env: StreamTableEnvironment, settings: Settings, start: Position, until: Position | None
) -> None:
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
    # Event time for watermarks: cheap string splitting for a plain record, a JSON read for
    # any other. A record without a valid event time gets time 0: it neither holds the
    # watermark back nor pushes it into the future, and it is rejected downstream anyway.
    text = "CAST(v AS STRING)"
    plain = f"TRY_CAST({_plain_field(text, 3)} AS BIGINT)"
    other = f"TRY_CAST(JSON_VALUE({text}, '$.event_time') AS BIGINT)"
    seconds = f"CASE WHEN REGEXP({text}, '{_PLAIN_EVENT}') THEN {plain} ELSE {other} END"
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


def _create_views(t_env: StreamTableEnvironment, settings: Settings, bounded: bool) -> None:
    """ratings -> events (valid) and rejected; events -> late and transitions -> batches.

    Batches of an item's transitions are cut by processing time when the job runs on: an
    item's share of everything that arrived in `stream.item_batch_ms`, whatever the event
    times. Processing-time windows never close at the end of a bounded input, so a bounded
    replay cuts them by event time instead (`stream.replay_batch_s`): it flushes at the end.
    """
    rules = settings.events
    t_env.create_temporary_function("validate", udf(Validate(rules), result_type=VALIDATION_TYPE))
    fields = ", ".join(
        f"TRY_CAST({_plain_field('s', index)} AS {kind}) AS {name}"
        for index, (name, kind) in enumerate(
            [("user_id", "BIGINT"), ("item_id", "BIGINT"), ("rating", "DOUBLE"),
             ("event_time", "BIGINT")]
        )
    )  # fmt: skip
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW parsed AS
        SELECT k, v, `partition`, `offset`, ts, {fields},
            REGEXP(s, '{_PLAIN_EVENT}') AS plain, CHAR_LENGTH(s) AS size
        FROM (SELECT *, CAST(v AS STRING) AS s FROM ratings)"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW classified AS
        SELECT *, COALESCE(plain AND k = CAST(user_id AS STRING)
            AND rating BETWEEN {rules.min_rating} AND {rules.max_rating}
            AND event_time <= {rules.max_event_time}
            AND size <= {rules.max_record_bytes}, FALSE) AS fast
        FROM parsed"""
    )
    t_env.execute_sql(
        """CREATE TEMPORARY VIEW checked AS
        SELECT k, `partition`, `offset`, ts, validate(k, v, `partition`, `offset`) AS c
        FROM classified WHERE NOT fast"""
    )
    t_env.execute_sql(
        """CREATE TEMPORARY VIEW events AS
        SELECT user_id, item_id, rating, event_time, `partition`, `offset`, ts
        FROM classified WHERE fast
        UNION ALL
        SELECT c.user_id, c.item_id, c.rating, c.event_time, `partition`, `offset`, ts
        FROM checked WHERE c.dead_letter IS NULL"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW high AS
        SELECT *, CURRENT_WATERMARK(ts) IS NOT NULL AND ts < CURRENT_WATERMARK(ts) AS late
        FROM events WHERE rating >= {rules.high_rating}"""
    )
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW placed AS SELECT user_id, item_id, event_time, ts FROM high "
        "WHERE NOT late"
    )
    # One row per user and second: the second's distinct items in order (ties by item id).
    t_env.execute_sql(
        """CREATE TEMPORARY VIEW user_seconds AS
        SELECT user_id, window_time AS t, MAX(event_time) AS event_time,
            ARRAY_DISTINCT(ARRAY_SORT(ARRAY_AGG(item_id))) AS items,
            MIN(item_id) AS lo, MAX(item_id) AS hi
        FROM TABLE(TUMBLE(TABLE placed, DESCRIPTOR(ts), INTERVAL '1' SECOND))
        GROUP BY user_id, window_start, window_end, window_time"""
    )
    t_env.execute_sql(
        """CREATE TEMPORARY VIEW linked AS
        SELECT *, LAG(hi) OVER (PARTITION BY user_id ORDER BY t) AS before FROM user_seconds"""
    )
    # previous second's last item -> this second's first; then within the second, in order
    t_env.execute_sql(
        """CREATE TEMPORARY VIEW transitions AS
        SELECT before AS src, lo AS dst, event_time, t FROM linked
        WHERE before IS NOT NULL AND before <> lo
        UNION ALL
        SELECT items[pos - 1] AS src, x AS dst, event_time, t
        FROM (SELECT * FROM linked WHERE lo <> hi)
            CROSS JOIN UNNEST(items) WITH ORDINALITY AS step(x, pos)
        WHERE pos > 1"""
    )
    stream = settings.stream
    if bounded:
        time, size = "t", f"INTERVAL '{_day_to_second(stream.replay_batch_s)}' DAY TO SECOND"
    else:
        time, size = "PROCTIME()", f"INTERVAL '{stream.item_batch_ms / 1000:.3f}' SECOND"
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW touches AS
        SELECT src AS item, CAST(dst AS STRING) AS out_item, CAST(NULL AS STRING) AS in_item,
            event_time, {time} AS batch_time FROM transitions
        UNION ALL
        SELECT dst, CAST(NULL AS STRING), CAST(src AS STRING), event_time, {time}
        FROM transitions"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW batches AS
        SELECT CAST(item AS STRING) AS k, MAX(event_time) AS event_time,
            LISTAGG(out_item) AS outgoing, LISTAGG(in_item) AS incoming
        FROM TABLE(TUMBLE(TABLE touches, DESCRIPTOR(batch_time), {size}))
        GROUP BY item, window_start, window_end"""
    )


def _item_inputs(t_env: StreamTableEnvironment) -> DataStream:
    """Everything the item function needs, as one stream: one SQL plan reads the topic once."""
    late_record = """JSON_OBJECT(KEY 'user_id' VALUE user_id, KEY 'item_id' VALUE item_id,
        KEY 'rating' VALUE rating, KEY 'event_time' VALUE event_time,
        KEY 'partition' VALUE `partition`, KEY 'offset' VALUE `offset`,
        KEY 'watermark' VALUE CAST(CURRENT_WATERMARK(ts) AS STRING))"""
    table = t_env.sql_query(
        f"""SELECT k, ROW({DELTA}, event_time, outgoing, incoming) FROM batches
        UNION ALL
        SELECT COALESCE(k, ''), ROW({REJECTED}, CAST(0 AS BIGINT), c.dead_letter,
            CAST(NULL AS STRING))
        FROM checked WHERE c.dead_letter IS NOT NULL
        UNION ALL
        SELECT CAST(user_id AS STRING), ROW({LATE_EVENT}, event_time, {late_record},
            CAST(NULL AS STRING))
        FROM high WHERE late"""
    )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]))


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
        f"""SELECT JSON_VALUE(v, '$.item'),
            ROW({WALKS}, CAST(0 AS BIGINT), v, CAST(NULL AS STRING)) FROM hops"""
    )
    return t_env.to_append_stream(table, Types.ROW([Types.STRING(), ITEM_INPUT_TYPE]))


def build_job(
    env: StreamExecutionEnvironment,
    settings: Settings,
    start: Position,
    until: Position | None,
) -> None:
    """Add the job to `env`. A bounded replay (`until`) rebuilds state and samples no walks:
    walks travel through a feedback topic, which never ends."""
    topics = settings.kafka.topics
    walks = until is None
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", f"{settings.stream.idle_timeout_s} s")
    _create_ratings(t_env, settings, start, until)
    _create_views(t_env, settings, bounded=not walks)

    inputs = _item_inputs(t_env)
    if walks:
        inputs = inputs.union(_hops(t_env, settings))
    items = (
        _key_by_first_field(inputs, ITEM_INPUT_TYPE)
        .process(
            ItemFunction(settings.stream, settings.walks.length, settings.training.seed, walks),
            output_type=Types.STRING(),
        )
        .name("items")
    )
    items.get_side_output(DEAD_LETTER).sink_to(text_sink(settings, topics.dead_letter, True))
    items.get_side_output(LATE).sink_to(text_sink(settings, topics.late, True))
    items.get_side_output(ITEMS).sink_to(text_sink(settings, topics.items, True))
    if walks:
        items.get_side_output(SAMPLES).sink_to(text_sink(settings, topics.samples))
        items.get_side_output(HOPS).sink_to(text_sink(settings, topics.walk_hops))
    if settings.stream.emit_counts:
        items.get_side_output(COUNTS).sink_to(text_sink(settings, topics.counts, True))
