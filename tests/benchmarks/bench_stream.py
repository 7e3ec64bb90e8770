"""Streaming benchmark (`make bench`): the job's ingest against a pure-JVM Flink SQL job.

Runs its own Kafka on free loopback ports under a temporary directory, writes a synthetic
topic once (3 million events by default: a replay of about a minute, so that the rate is the
sustained one more than the start-up's, which weighs on a shorter replay: starting the
Python functions, and the JIT compiling Flink's generated code, at 0.4 of a core through the
first 20 s), then alternates, `--repeats` times:

- walkstream: `walkstream job --from earliest --until latest` (validation, per-user order,
  per-item counts; no count updates written), net runtime as Flink reports it;
- baseline: a Flink SQL job with the same source and parallelism computing the same
  transition counts in the JVM (JSON format, rating filter, LAG over user partitions,
  GROUP BY pair) into a blackhole sink.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streaming.config import Settings
from streaming.runtime import LocalStack
from tests.benchmarks.stack import private_settings, synthetic_topic

ROOT = Path(__file__).resolve().parents[2]

_SQL_JOB = """
import sys
from pyflink.table import StreamTableEnvironment
from streaming.config import load_settings, parse_assignments
from streaming.job.environment import execution_environment
settings = load_settings(overrides=parse_assignments(sys.argv[2:]))
env = execution_environment(settings)
t_env = StreamTableEnvironment.create(env)
t_env.execute_sql(f'''CREATE TABLE src (user_id BIGINT, item_id BIGINT, rating DOUBLE,
  event_time BIGINT, ts AS TO_TIMESTAMP_LTZ(event_time, 0),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'kafka',
  'topic' = '{sys.argv[1]}', 'properties.bootstrap.servers' = '{settings.kafka.bootstrap_servers}',
  'properties.group.id' = 'sql-baseline', 'scan.startup.mode' = 'earliest-offset',
  'scan.bounded.mode' = 'latest-offset', 'format' = 'json', 'json.ignore-parse-errors' = 'true')''')
t_env.execute_sql(
    "CREATE TABLE snk (a BIGINT, b BIGINT, n BIGINT) WITH ('connector' = 'blackhole')")
result = t_env.execute_sql('''INSERT INTO snk SELECT prev_item, item_id, COUNT(*) FROM (
  SELECT item_id, LAG(item_id) OVER (PARTITION BY user_id ORDER BY ts) AS prev_item
  FROM src WHERE rating >= 3.5) WHERE prev_item IS NOT NULL AND prev_item <> item_id
  GROUP BY prev_item, item_id''')
runtime = result.get_job_client().get_job_execution_result().result().get_net_runtime()
print(f"net {runtime / 1000:.3f}")
"""


def _flags(settings: Settings, **extra: Any) -> list[str]:
    values = {
        "kafka.bootstrap_servers": settings.kafka.bootstrap_servers,
        "runtime.jars_dir": settings.runtime.jars_dir,
        **extra,
    }
    return [f"{key}={value}" for key, value in values.items()]


def _set(assignments: list[str]) -> list[str]:
    return [part for assignment in assignments for part in ("--set", assignment)]


def _walkstream_job(
    settings: Settings, topic: str, run: str, parallelism: int, tmp: Path, extra: list[str]
) -> float:
    flags = _flags(
        settings,
        **dict(assignment.split("=", 1) for assignment in extra),
        **{
            "kafka.topics.ratings": topic,
            "stream.group_id": f"bench-{run}",
            "flink.parallelism": parallelism,
            "flink.checkpoint_dir": tmp / run,
            **{f"kafka.topics.{name}": f"bench-{run}.{name}" for name in
               ("dead_letter", "late", "samples", "items", "walk_hops", "counts")},
        },
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "streaming.cli", *_set(flags), "job", "--from", "earliest",
         "--until", "latest"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"finished after ([\d.]+)s", out)
    assert match, out
    return float(match.group(1))


def _sql_job(settings: Settings, topic: str, parallelism: int) -> float:
    flags = _flags(settings, **{"flink.parallelism": parallelism})
    out = subprocess.run(
        [sys.executable, "-c", _SQL_JOB, topic, *flags], capture_output=True, text=True, check=True
    ).stdout
    return float(out.split("net ")[-1])


def bench_ingest(
    settings: Settings,
    topic: str,
    events: int,
    parallelism: int,
    repeats: int,
    tmp: Path,
    extra: list[str],
) -> dict[str, Any]:
    ours, sql = [], []
    for repeat in range(repeats):
        run = f"p{parallelism}r{repeat}"
        ours.append(_walkstream_job(settings, topic, run, parallelism, tmp, extra))
        sql.append(_sql_job(settings, topic, parallelism))
        print(
            f"ingest p={parallelism} run {repeat + 1}: walkstream {events / ours[-1]:,.0f}/s, "
            f"SQL {events / sql[-1]:,.0f}/s",
            flush=True,
        )
    ours_rate, sql_rate = events / statistics.median(ours), events / statistics.median(sql)
    return {
        "parallelism": parallelism,
        "walkstream_events_per_s": ours_rate,
        "sql_events_per_s": sql_rate,
        "ratio": ours_rate / sql_rate,
        "walkstream_s": ours,
        "sql_s": sql,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
        help="a setting of the walkstream job (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "stream.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, _ = private_settings(tmp / "home")
        stack = LocalStack(settings)
        stack.up()
        try:
            topic = "bench.ratings"
            synthetic_topic(
                settings, tmp, topic, args.events, items=20_000, communities=100, seed=7
            )
            results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "events": args.events}
            results["ingest"] = [
                bench_ingest(settings, topic, args.events, p, args.repeats, tmp, args.set)
                for p in args.parallelism
            ]
        finally:
            stack.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for row in results["ingest"]:
        ours, sql = row["walkstream_events_per_s"], row["sql_events_per_s"]
        print(
            f"ingest p={row['parallelism']}: walkstream {ours:,.0f} events/s, Flink SQL "
            f"{sql:,.0f} events/s, ratio {row['ratio']:.2f} (medians of {args.repeats})"
        )
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
