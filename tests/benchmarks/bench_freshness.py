"""Freshness (`make bench`): time from an event written to Kafka to the walks it causes.

Runs its own Kafka on free ports, starts the job (out-of-orderness 1 s), then produces live
events at `--rate` events/s for `--warmup` seconds and then for `--seconds`, each stamped
with the current time as its event time (whole seconds, as the schema has it). Freshness is
that of the walks caused by the measured seconds' events; the warm-up's (the job's first
traffic: its start and the JIT compiling Flink's generated code) is reported apart. A walk
sample carries the event time of the transition that started it, so its latency is the
sample's Kafka timestamp minus that event time: an upper bound that is at most 1 s too high
(the event was written somewhere within that second), reported with the lower bound (1 s
less).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streaming.core.events import Event
from streaming.producer import Pacer, RatingProducer
from streaming.records import read_sample
from streaming.runtime import LocalStack
from tests.benchmarks.stack import private_settings
from tests.kafka_records import read_topic

ROOT = Path(__file__).resolve().parents[2]


def _summary(latency: np.ndarray, times: np.ndarray) -> dict[str, Any]:
    """p50 and p99 (upper bounds) and p99 per 5 s of event time: does latency grow (the job
    falls behind), spike (a pause) or stay flat?"""
    in_slice = (
        (times >= s) & (times < s + 5) for s in range(int(times.min()), int(times.max()) + 1, 5)
    )
    slices = [float(np.percentile(latency[mask], 99)) for mask in in_slice if mask.any()]
    p99 = float(np.percentile(latency, 99))
    return {
        "samples": len(latency),
        "p50_upper_s": float(np.percentile(latency, 50)),
        "p99_upper_s": p99,
        "p99_lower_s": p99 - 1.0,
        "p99_upper_by_5s": slices,
    }


def _describe(summary: dict[str, Any]) -> str:
    return (
        f"{summary['samples']:,} walks, p50 <= {summary['p50_upper_s']:.2f}s, p99 between "
        f"{summary['p99_lower_s']:.2f}s and {summary['p99_upper_s']:.2f}s; p99 upper by 5 s: "
        + " ".join(f"{p:.1f}" for p in summary["p99_upper_by_5s"])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--warmup", type=float, default=60, help="seconds of traffic first")
    parser.add_argument("--seconds", type=float, default=60, help="seconds measured")
    # 1: on two cores that also run the broker and the producer, a second slot's operators
    # compete for the same cores (at 10k events/s and parallelism 2 the job took 1.4 cores
    # and fell behind; see docs/known-limits.md).
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "fresh.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        settings, assignments = private_settings(
            Path(tmp_dir) / "home",
            "stream.out_of_orderness_s=1",
            "stream.walks_per_weight=0.05",
            f"flink.parallelism={args.parallelism}",
        )
        stack = LocalStack(settings)
        stack.up()
        flags = [part for a in assignments for part in ("--set", a)]
        job = subprocess.Popen(
            [sys.executable, "-m", "streaming.cli", *flags, "job", "--from", "latest"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(20)  # job start-up: events sent before its source reads are skipped
            rng = np.random.default_rng(0)
            pacer = Pacer(rate=args.rate)
            warmup = int(args.rate * args.warmup)
            count = warmup + int(args.rate * args.seconds)
            users, items = rng.integers(1, 20_000, count), rng.zipf(1.3, count) % 5_000 + 1
            began = time.monotonic()
            with RatingProducer(settings) as producer:
                for index in range(count):
                    pacer.wait(index, 0)
                    if index == warmup:
                        # its second may hold warm-up events too: measured from the next
                        measured_from = int(time.time()) + 1
                        print(f"warm-up done; measuring from {measured_from}", flush=True)
                    producer.send(
                        Event(int(users[index]), int(items[index]), 5.0, int(time.time()))
                    )
            sent_rate = count / (time.monotonic() - began)
            time.sleep(10)  # let the last walks arrive before the job is stopped
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        samples = [
            (stamp, read_sample(value))
            for _, _, stamp, _, value in read_topic(settings, settings.kafka.topics.samples)
        ]
        stack.down()
    walks = [(stamp, sample) for stamp, sample in samples if sample.kind == "walk"]
    times = np.array([sample.newest_event_time for _, sample in walks])
    latency = np.array([stamp for stamp, _ in walks]) / 1000 - times
    measured = times >= measured_from
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "target_rate": args.rate,
        "sent_rate": sent_rate,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        **_summary(latency[measured], times[measured]),
        "warmup": _summary(latency[~measured], times[~measured]) if (~measured).any() else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if result["warmup"] is not None:
        print(f"warm-up ({args.warmup:.0f} s): {_describe(result['warmup'])}")
    print(f"freshness at {sent_rate:,.0f} events/s (bound 1 s): {_describe(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
