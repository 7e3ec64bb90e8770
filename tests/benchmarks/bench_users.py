"""User-vector benchmark (`make bench`): republishing every user, and freshness through the
live system.

`--part republish`: a private Redis on a free loopback port; a version of `--items` items
(dimension 64) and `--users` users with 20 recent items each (random), written by the
trainer's own `UserVectors.publish`, `--repeat` times: users/s (median), and Redis memory per
user (vector and recent items). Baseline in the same run: the version's item hash written with
`write_version` for as many rows (what "like items" means).

`--part freshness`: Kafka and Redis on free ports, the job (`--from latest`) and the trainer
with default settings. Warm-up: live events for `--warmup` s (whole-second event times,
current time), so a version exists and knows the items. Then `--seconds` s at `--rate`
events/s, of which every `--trace-every`th event is the first kept rating of a user never
seen before, of an item the version has: from that record's Kafka timestamp (the broker's
append time) until its user has a vector in the current version in Redis (polled every
20 ms) is the user's freshness. The job orders each user's ratings by event time, so a
rating waits for the watermark to pass its second (`stream.out_of_orderness_s` after it):
`--out-of-orderness` sets that to measure its share.
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
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from streaming.core.events import Event
from streaming.embeddings.vectors import Embeddings
from streaming.producer import Pacer, RatingProducer
from streaming.records import UserItems, event_from_json
from streaming.runtime import LocalStack
from streaming.runtime.services import RedisServer
from streaming.store import EmbeddingClient, connect
from streaming.store.versions import VersionKeys, write_user_items, write_version
from streaming.trainer.metrics import TrainerMetrics
from streaming.trainer.users import UserVectors
from tests.benchmarks.stack import private_settings
from tests.kafka_records import read_topic

ROOT = Path(__file__).resolve().parents[2]
DIM = 64
RECENT = 20


def republish(users: int, items: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = np.arange(items, dtype=np.int64)
    embeddings = Embeddings(
        ids, rng.standard_normal((items, DIM)).astype(np.float32), np.zeros(items, dtype=bool)
    )
    baseline_vectors = rng.standard_normal((users, DIM)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp_dir:
        settings, _ = private_settings(
            Path(tmp_dir) / "home", f"users.recent_items={RECENT}", "trainer.metrics_port=0"
        )
        redis = RedisServer(settings)
        redis.start(report=lambda _: None)
        try:
            client = connect(settings.redis)
            prefix = settings.redis.key_prefix
            component = UserVectors(settings, TrainerMetrics())
            for user in range(users):
                component.state.apply(
                    UserItems(10**9 + user, RECENT, rng.integers(0, items, RECENT).tolist(), 0)
                )
            runs: list[dict[str, float]] = []
            memory: dict[str, float] = {}
            for run in range(repeat):
                client.flushall()
                began = time.perf_counter()
                version = write_version(client, prefix, np.arange(users), baseline_vectors, [], {})
                items_s = time.perf_counter() - began
                client.delete(VersionKeys(prefix).vectors(version))
                version = write_version(client, prefix, ids, embeddings.vectors, [], {})
                before = cast(int, client.info("memory")["used_memory"])
                write_user_items(client, prefix, *component.state.arrays())  # as kept by updates
                between = cast(int, client.info("memory")["used_memory"])
                began = time.perf_counter()
                component.publish(version, embeddings, embeddings.as_dict())
                seconds = time.perf_counter() - began
                after = cast(int, client.info("memory")["used_memory"])
                memory = {"vector": (after - between) / users, "items": (between - before) / users}
                runs.append({"items_per_s": users / items_s, "users_per_s": users / seconds,
                             "seconds": seconds})  # fmt: skip
                print(
                    f"run {run + 1}: users {users / seconds:,.0f}/s ({seconds:.2f}s); "
                    f"item hash {users / items_s:,.0f}/s",
                    flush=True,
                )
            client.close()
        finally:
            redis.stop(report=lambda _: None)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "users": users,
        "items": items,
        "dim": DIM,
        "recent_items": RECENT,
        "runs": runs,
        "median": median,
        "ratio_to_items": median["users_per_s"] / median["items_per_s"],
        "redis_bytes_per_user": memory,
    }


def freshness(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        extra = []
        if args.out_of_orderness is not None:
            extra.append(f"stream.out_of_orderness_s={args.out_of_orderness}")
        settings, assignments = private_settings(Path(tmp_dir) / "home", *extra)
        stack = LocalStack(settings)
        stack.up(report=lambda _: None)
        flags = [part for a in assignments for part in ("--set", a)]
        cli = [sys.executable, "-m", "streaming.cli", *flags]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log = (args.out.parent / "users-processes.log").open("wb")
        job = subprocess.Popen(
            [*cli, "job", "--from", "latest"], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        trainer = subprocess.Popen(
            [*cli, "trainer"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        client = EmbeddingClient.from_settings(settings.redis)
        seen: dict[int, float] = {}
        switches: list[tuple[float, int]] = []
        stop = threading.Event()
        pending: set[int] = set()
        lock = threading.Lock()

        def watch() -> None:
            redis = connect(settings.redis)
            keys = VersionKeys(settings.redis.key_prefix)
            while not stop.is_set():
                version = client.version
                if version is not None and (not switches or switches[-1][1] != version):
                    switches.append((time.time(), version))
                with lock:
                    waiting = sorted(pending)
                if version is not None and waiting:
                    found = redis.hmget(keys.users(version), [str(u) for u in waiting])
                    now = time.time()
                    with lock:
                        for user, blob in zip(waiting, found, strict=True):
                            if blob is not None:
                                seen[user] = now
                                pending.discard(user)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        try:
            time.sleep(20)  # job start-up: events sent before its source reads are skipped
            rng = np.random.default_rng(0)
            pacer = Pacer(rate=args.rate)
            warmup = int(args.rate * args.warmup)
            measured = warmup + int(args.rate * args.seconds)
            # then 10 s more, untraced: the last measured second's ratings wait for newer
            # event times to pass the watermark, as they would in a live feed
            count = measured + int(args.rate * 10)
            users, items = rng.integers(1, 20_000, count), rng.zipf(1.3, count) % 2_000 + 1
            traced: dict[int, int] = {}
            watcher.start()
            began = time.monotonic()
            with RatingProducer(settings) as producer:
                for index in range(count):
                    pacer.wait(index, 0)
                    user, item = int(users[index]), int(items[index])
                    if warmup <= index < measured and (index - warmup) % args.trace_every == 0:
                        user = 10**8 + index  # a user never seen before, one kept rating
                        item = 1 + index % 50  # among the most rated items: in the version
                        traced[user] = item
                        with lock:
                            pending.add(user)
                    producer.send(Event(user, item, 5.0, int(time.time())))
            sent_rate = count / (time.monotonic() - began)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if not pending:
                        break
                time.sleep(0.1)
        finally:
            stop.set()
            for process in (job, trainer):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
        appended = {}
        for _, _, stamp, _, value in read_topic(settings, settings.kafka.topics.ratings):
            event = event_from_json(value, settings.events)
            if event.user_id in traced:
                appended[event.user_id] = stamp / 1000
        client.close()
        stack.down(report=lambda _: None)
    latency = np.array([seen[u] - appended[u] for u in traced if u in seen and u in appended])
    missing = len(traced) - len(latency)
    by_time = sorted(
        (appended[u], seen.get(u, -1.0) - appended[u]) for u in traced if u in appended
    )
    return {
        "target_rate": args.rate,
        "sent_rate": sent_rate,
        "out_of_orderness_s": settings.stream.out_of_orderness_s,
        "traced_users": len(traced),
        "never_seen": missing,
        "p50_s": float(np.percentile(latency, 50)) if len(latency) else None,
        "p99_s": float(np.percentile(latency, 99)) if len(latency) else None,
        "max_s": float(latency.max()) if len(latency) else None,
        "traces": by_time,
        "switches": switches,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["republish", "freshness", "both"], default="both")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2_000)
    parser.add_argument("--warmup", type=float, default=60, help="seconds of traffic first")
    parser.add_argument("--seconds", type=float, default=60, help="seconds measured")
    parser.add_argument("--trace-every", type=int, default=20)
    parser.add_argument("--out-of-orderness", type=int, help="stream.out_of_orderness_s")
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "users.json")
    args = parser.parse_args()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    if args.part in ("republish", "both"):
        result["republish"] = republish(args.users, args.items, args.repeat)
        median = result["republish"]["median"]
        print(
            f"republish {args.users:,} users: {median['users_per_s']:,.0f} users/s "
            f"({median['seconds']:.2f}s), {result['republish']['ratio_to_items']:.2f}x the item "
            f"hash's {median['items_per_s']:,.0f}/s; Redis bytes per user: "
            f"{result['republish']['redis_bytes_per_user']}"
        )
    if args.part in ("freshness", "both"):
        result["freshness"] = fresh = freshness(args)
        print(
            f"freshness at {fresh['sent_rate']:,.0f} events/s, out-of-orderness "
            f"{fresh['out_of_orderness_s']}s: {fresh['traced_users']:,} new users traced, "
            f"p50 {fresh['p50_s']}s, p99 {fresh['p99_s']}s, max {fresh['max_s']}s, "
            f"{fresh['never_seen']} never seen"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
