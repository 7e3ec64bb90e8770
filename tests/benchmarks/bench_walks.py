"""Walk generation (`make bench`): walk steps per second through the running job.

Runs its own Kafka on free loopback ports, writes a synthetic topic, starts the job from
`earliest` with `--walks-per-weight` walks per transition and lets it run until the samples
stop growing. A walk of n items made n - 1 steps (hops), each drawn where the item's counts
live and, but for the last, sent through the feedback topic to the next item's task. The
rate is the steps of all samples over the time between the first and the last sample's
Kafka timestamp (the job's start-up is not in it), repeated `--repeats` times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer

from streaming.config import Settings, load_settings, parse_assignments
from streaming.errors import RuntimeServiceError
from streaming.records import read_sample
from streaming.runtime import LocalStack
from streaming.topics import topic_partitions
from tests.benchmarks.stack import private_settings, synthetic_topic
from tests.kafka_records import read_topic

ROOT = Path(__file__).resolve().parents[2]


def _end(settings: Settings, topic: str) -> int:
    """Records written to `topic` so far (its end offsets; samples are not transactional)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        return sum(consumer.end_offsets(topic_partitions(settings.kafka, [topic])).values())
    finally:
        consumer.close()


def _has_samples(settings: Settings, topic: str) -> bool:
    try:
        return _end(settings, topic) > 0
    except RuntimeServiceError:  # the job creates the topic as it starts
        return False


def _run(
    settings: Settings, flags: list[str], quiet_s: float, start_s: float = 180
) -> dict[str, float]:
    """Run the job until no new sample arrived for `quiet_s` after the first; measure its
    samples."""
    topic = settings.kafka.topics.samples
    job = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", *flags, "job", "--from", "earliest"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        # The quiet period starts with the first sample: a slow start-up once ended a run
        # after 41 steps.
        deadline = time.monotonic() + start_s
        while not _has_samples(settings, topic):
            if time.monotonic() > deadline:
                raise SystemExit(f"no walk sample within {start_s:.0f} s of starting the job")
            time.sleep(1)
        seen, changed = -1, time.monotonic()
        while time.monotonic() - changed < quiet_s:
            time.sleep(5)
            count = _end(settings, topic)
            if count != seen:
                seen, changed = count, time.monotonic()
            print(f"  {count:,} walks so far", flush=True)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    samples = [(stamp, read_sample(value)) for _, _, stamp, _, value in read_topic(settings, topic)]
    walks = [(stamp, sample) for stamp, sample in samples if sample.kind == "walk"]
    stamps = [stamp for stamp, _ in walks]
    steps = sum(len(sample.items) - 1 for _, sample in walks)
    seconds = (max(stamps) - min(stamps)) / 1000
    return {"walks": len(walks), "steps": steps, "seconds": seconds, "rate": steps / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--walks-per-weight", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "walks.json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, assignments = private_settings(tmp / "home")
        stack = LocalStack(settings)
        stack.up()
        try:
            synthetic_topic(
                settings, tmp, "bench.ratings", args.events, items=5_000, communities=50, seed=3
            )
            for repeat in range(args.repeats):
                run = f"w{repeat}"
                extra = [
                    "kafka.topics.ratings=bench.ratings",
                    f"stream.group_id=bench-{run}",
                    f"stream.walks_per_weight={args.walks_per_weight}",
                    f"flink.checkpoint_dir={tmp / run}",
                    *(f"kafka.topics.{name}=bench-{run}.{name}"
                      for name in ("dead_letter", "late", "samples", "items", "walk_hops")),
                ]  # fmt: skip
                run_settings = load_settings(overrides=parse_assignments([*assignments, *extra]))
                flags = [part for a in [*assignments, *extra] for part in ("--set", a)]
                result = _run(run_settings, flags, quiet_s=20)
                runs.append(result)
                print(
                    f"walks run {repeat + 1}: {result['steps']:,} steps in "
                    f"{result['seconds']:.1f} s = {result['rate']:,.0f} steps/s",
                    flush=True,
                )
        finally:
            stack.down()
    rate = statistics.median(run["rate"] for run in runs)
    result = {"date": time.strftime("%Y-%m-%d"), "events": args.events, "runs": runs,
              "median_steps_per_s": rate}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"walk steps: {rate:,.0f}/s (median of {args.repeats}); results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
