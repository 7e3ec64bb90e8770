"""Where should the job's per-event work run? A design probe, not the job.

`python -m tests.benchmarks.bench_placement [--events N] [--repeats R]` writes one synthetic
topic (as `bench_stream` does) and times, interleaved and at parallelism 1, the pure-JVM SQL
baseline of `bench_stream` against three pipelines that keep the job's ordering rules:

- `jvm-parse-once`: the record parsed once (Flink's JSON format), a validity filter, late rows
  split off with CURRENT_WATERMARK, ORDER BY (event time, item), the previous item per user
  (as the job finds it), self-loops dropped, counts per pair; invalid and late rows to their
  own sinks. All in the JVM.
- `jvm-json-value`: the same on the raw record (which a dead letter must carry), each field
  read with its own JSON_VALUE, i.e. one parse per field.
- `python-batches`: `jvm-parse-once` up to the transitions, which are then grouped per item
  shard into 200 ms processing-time batches; one Python call per batch adds them to each
  item's `ItemNeighbours` in a MapState. It prints how many transitions it counted, to set
  against the exact number `streaming.embeddings.graph` gives for the same file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streaming.config import Settings, load_settings, parse_assignments
from streaming.runtime import LocalStack
from tests.benchmarks.bench_stream import _flags, _sql_job
from tests.benchmarks.stack import private_settings, synthetic_topic
from tests.job.jobs import batch_counts

VARIANTS = ("jvm-parse-once", "jvm-json-value", "python-batches")

_JSON_SOURCE = """CREATE TABLE src (user_id BIGINT, item_id BIGINT, rating DOUBLE,
  event_time BIGINT, ts AS TO_TIMESTAMP_LTZ(event_time, 0), pt AS PROCTIME(),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ({options}, 'format' = 'json',
  'json.ignore-parse-errors' = 'true')"""
_JSON_ROWS = """CREATE TEMPORARY VIEW parsed AS SELECT CAST(user_id AS STRING) AS k,
  CAST(user_id AS INT) AS u, CAST(item_id AS INT) AS i, rating AS r, ts, pt FROM src"""
_RAW_SOURCE = """CREATE TABLE src (k STRING, v BYTES, ts AS TO_TIMESTAMP_LTZ(CASE WHEN {secs}
  BETWEEN 0 AND 4102444800 THEN {secs} ELSE 0 END, 0), pt AS PROCTIME(),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ({options}, 'key.format' = 'raw',
  'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY')"""
_RAW_ROWS = """CREATE TEMPORARY VIEW parsed AS SELECT k,
  JSON_VALUE(s, '$.user_id' RETURNING INTEGER NULL ON ERROR) AS u,
  JSON_VALUE(s, '$.item_id' RETURNING INTEGER NULL ON ERROR) AS i,
  JSON_VALUE(s, '$.rating' RETURNING DOUBLE NULL ON ERROR) AS r, ts, pt
  FROM (SELECT *, CAST(v AS STRING) AS s FROM src)"""
_VALID = "u IS NOT NULL AND i IS NOT NULL AND r BETWEEN 0.5 AND 5 AND k = CAST(u AS STRING)"
_VIEWS = [
    f"CREATE TEMPORARY VIEW good AS SELECT u, i, r, ts, pt FROM parsed WHERE {_VALID}",
    """CREATE TEMPORARY VIEW ordered AS SELECT u, i, ts, pt FROM good WHERE r >= 3.5 AND
      (CURRENT_WATERMARK(ts) IS NULL OR ts > CURRENT_WATERMARK(ts)) ORDER BY ts, i""",
    """CREATE TEMPORARY VIEW transitions AS SELECT p AS src, i AS dst, pt FROM (
      SELECT i, pt, FIRST_VALUE(i) OVER (PARTITION BY u ORDER BY ts
        ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS p FROM ordered)
      WHERE p IS NOT NULL AND p <> i""",
    "CREATE TABLE bad (u INT) WITH ('connector' = 'blackhole')",
    "CREATE TABLE late (u INT) WITH ('connector' = 'blackhole')",
    "CREATE TABLE counts (a INT, b INT, n BIGINT) WITH ('connector' = 'blackhole')",
]
_SIDE_OUTPUTS = [
    f"INSERT INTO bad SELECT u FROM parsed WHERE NOT ({_VALID}) IS TRUE",
    "INSERT INTO late SELECT u FROM good WHERE ts <= CURRENT_WATERMARK(ts)",
]
_COUNTS = "INSERT INTO counts SELECT src, dst, COUNT(*) FROM transitions GROUP BY src, dst"
_BATCHES = """SELECT CAST(MOD(src, 64) AS STRING), LISTAGG(CAST(src AS STRING) || ':' ||
  CAST(dst AS STRING)) FROM TABLE(TUMBLE(TABLE transitions, DESCRIPTOR(pt), INTERVAL '0.2'
  SECOND)) GROUP BY MOD(src, 64), window_start, window_end"""


def _run_variant(variant: str, topic: str, assignments: list[str]) -> None:
    """Build and run one pipeline in this process; print its net runtime."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import MapStateDescriptor
    from pyflink.table import StreamTableEnvironment

    from streaming.core.neighbours import ItemNeighbours
    from streaming.job.environment import execution_environment

    class ItemShard(KeyedProcessFunction):  # type: ignore[misc]
        """One call per batch of "src:dst" pairs; per-item counts in a MapState."""

        def open(self, runtime_context: RuntimeContext) -> None:
            self.items = runtime_context.get_map_state(
                MapStateDescriptor("items", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
            )
            self.counted = 0

        def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
            by_src: dict[int, list[int]] = {}
            for pair in value[1].split(","):
                src, _, dst = pair.partition(":")
                by_src.setdefault(int(src), []).append(int(dst))
            for src, dsts in by_src.items():
                neighbours = self.items.get(src) or ItemNeighbours()
                for dst in dsts:
                    neighbours.add(dst)
                self.items.put(src, neighbours)
                self.counted += len(dsts)
            return iter(())

        def close(self) -> None:
            print(f"counted {self.counted}", flush=True)

    settings = load_settings(overrides=parse_assignments(assignments))
    env = execution_environment(settings)
    t_env = StreamTableEnvironment.create(env)
    options = (
        f"'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = "
        f"'{settings.kafka.bootstrap_servers}', 'properties.group.id' = 'placement-{variant}', "
        "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
    )
    if variant == "jvm-json-value":
        secs = "TRY_CAST(JSON_VALUE(CAST(v AS STRING), '$.event_time') AS BIGINT)"
        t_env.execute_sql(_RAW_SOURCE.format(secs=secs, options=options))
        t_env.execute_sql(_RAW_ROWS)
    else:
        t_env.execute_sql(_JSON_SOURCE.format(options=options))
        t_env.execute_sql(_JSON_ROWS)
    for statement in _VIEWS:
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    for insert in _SIDE_OUTPUTS:
        statements.add_insert_sql(insert)
    if variant == "python-batches":
        batches = t_env.to_append_stream(
            t_env.sql_query(_BATCHES), Types.ROW([Types.STRING(), Types.STRING()])
        )
        batches.key_by(lambda row: row[0], key_type=Types.STRING()).process(ItemShard()).print()
        statements.attach_as_datastream()
        runtime = env.execute("placement").get_net_runtime()
    else:
        statements.add_insert_sql(_COUNTS)
        result = statements.execute().get_job_client().get_job_execution_result().result()
        runtime = result.get_net_runtime()
    print(f"net {runtime / 1000:.3f}", flush=True)


def _timed(variant: str, settings: Settings, topic: str) -> tuple[float, int | None]:
    if variant == "sql":
        return _sql_job(settings, topic, 1), None
    flags = _flags(settings, **{"flink.parallelism": 1})
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_placement", "--run", variant, topic,
         *flags],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    counted = [int(line.split()[1]) for line in out.splitlines() if line.startswith("counted ")]
    return float(out.split("net ")[-1]), sum(counted) if counted else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        _run_variant(args.run[0], args.run[1], args.run[2:])
        return 0
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, _ = private_settings(tmp / "home")
        stack = LocalStack(settings)
        stack.up()
        try:
            topic = "bench.ratings"
            ratings = synthetic_topic(
                settings, tmp, topic, args.events, items=20_000, communities=100, seed=7
            )
            exact = sum(batch_counts(ratings, settings).values())
            seconds: dict[str, list[float]] = {name: [] for name in ("sql", *VARIANTS)}
            for repeat in range(args.repeats):
                for name in seconds:
                    elapsed, counted = _timed(name, settings, topic)
                    seconds[name].append(elapsed)
                    extra = f", counted {counted:,} of {exact:,} transitions" if counted else ""
                    rate = args.events / elapsed
                    print(f"run {repeat + 1} {name}: {rate:,.0f} events/s{extra}", flush=True)
        finally:
            stack.down()
    baseline = args.events / statistics.median(seconds["sql"])
    for name, runs in seconds.items():
        rate = args.events / statistics.median(runs)
        print(f"{name:>15}: {rate:,.0f} events/s, {rate / baseline:.2f} x SQL (median of "
              f"{args.repeats})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
