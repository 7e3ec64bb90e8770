"""Parity (`make bench`): the version the streaming path serves against `walkstream batch` on
the same events, scored by the same code as `walkstream eval`.

Splits a ratings file with the evaluation's per-user temporal hold-out, trains batch on the
training part (median of `--batch-runs`: Word2Vec on several threads is not deterministic),
and streams the same training events through the real producer -> Kafka -> job -> trainer ->
Redis, with every default: once through a live job (`--from earliest`), once through a
bounded replay (`--from earliest --until latest`) followed by the trainer. Each waits for the
served version to settle (a full retrain covering every sample the job wrote, after the topic
stopped growing), reads all its vectors and scores them on the held-out transitions.
Writes `{"batch": {...}, "stream": {...}, "ratio": ..., "replay": {...}, "replay_ratio": ...}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer

from batch.evaluate import HoldOut, rank_scores, temporal_holdout
from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings
from streaming.core.events import Event
from streaming.embeddings.graph import transition_graph, user_sequences
from streaming.embeddings.pipeline import embed_sequences
from streaming.embeddings.vectors import Embeddings
from streaming.kafka_clients import kafka_python_config
from streaming.plot import version_embeddings
from streaming.producer import RatingProducer
from streaming.rating_files import load_events
from streaming.store import EmbeddingClient
from streaming.topics import ensure_topics, topic_partitions
from tests.benchmarks.stack import live_system, private_settings

ROOT = Path(__file__).resolve().parents[2]
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small" / "ratings.csv"


def _scores(embeddings: Embeddings, holdout: HoldOut, items: np.ndarray) -> dict[str, float]:
    scores = rank_scores(embeddings, holdout.queries, holdout.answers, 10)
    return {
        "hit_rate": scores.hit_rate,
        "ndcg": scores.ndcg,
        "answerable": scores.answerable,
        "cases": scores.cases,
        "coverage": float(np.isin(items, embeddings.item_ids).mean()),
        "vectors": len(embeddings),
    }


def _batch(settings: Settings, holdout: HoldOut, runs: int) -> dict[str, Any]:
    items = transition_graph(holdout.train).items
    found = []
    for run in range(runs):
        result = embed_sequences(holdout.train, settings.training, settings.walks, report=print)
        found.append(_scores(result.embeddings, holdout, items))
        print(f"batch run {run + 1}: HR@10 {found[-1]['hit_rate']:.4f}", flush=True)
    middle = sorted(found, key=lambda scores: scores["hit_rate"])[len(found) // 2]
    return {**middle, "runs": [scores["hit_rate"] for scores in found]}


def _training_events(holdout: HoldOut) -> list[Event]:
    """The training part as rating events (every kept rating is high: rated 5), in event-time
    order as the producer sends a file."""
    train = holdout.train
    users = np.repeat(train.users, train.lengths)
    order = np.lexsort((train.items, users, train.times))
    return [
        Event(int(u), int(i), 5.0, int(t))
        for u, i, t in zip(users[order], train.items[order], train.times[order], strict=True)
    ]


def _ends(settings: Settings, topic: str) -> dict[str, int]:
    consumer = KafkaConsumer(**kafka_python_config(settings.kafka))
    try:
        partitions = topic_partitions(settings.kafka, [topic])
        return {
            f"{tp.topic}:{tp.partition}": o for tp, o in consumer.end_offsets(partitions).items()
        }
    finally:
        consumer.close()


def _settle(settings: Settings, log: Path, quiet_s: float, deadline_s: float) -> dict[str, Any]:
    """Wait until the samples topic stopped growing for `quiet_s` and the served version is a
    full retrain that consumed all of it; return its meta."""
    client = EmbeddingClient.from_settings(settings.redis)
    samples = settings.kafka.topics.samples
    ensure_topics(settings.kafka, [samples])
    began = time.monotonic()
    ends, changed = _ends(settings, samples), time.monotonic()
    while time.monotonic() - began < deadline_s:
        time.sleep(5)
        now = _ends(settings, samples)
        if now != ends:
            ends, changed = now, time.monotonic()
            continue
        if client.version is None or time.monotonic() - changed < quiet_s:
            continue
        view = client.current()
        meta = {**view.meta(), "version": view.version}
        info = meta["info"]
        covered = {k: v for k, v in info.get("offsets", {}).items() if k.startswith(samples)}
        if info.get("kind") == "full" and covered == ends:
            print(f"settled: version {view.version} after {time.monotonic() - began:.0f}s")
            return meta
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise TimeoutError(f"the served version did not settle in {deadline_s:.0f}s:\n{tail}")


def _stream(
    holdout: HoldOut, events: list[Event], bounded: bool, deadline_s: float, extra: list[str]
) -> dict[str, Any]:
    items = transition_graph(holdout.train).items
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        live_system(Path(tmp_dir), "trainer.metrics_port=0", *extra) as system,
    ):
        settings = system.settings
        with RatingProducer(settings) as producer:
            for event in events:
                producer.send(event)
        print(f"produced {len(events):,} events", flush=True)
        if bounded:
            job = system.start("job", "job", "--from", "earliest", "--until", "latest")
            if job.wait(timeout=deadline_s) != 0:
                raise RuntimeError(system.log("job")[-3000:])
            print(f"bounded replay done in {time.monotonic() - began:.0f}s", flush=True)
        else:
            system.start("job", "job", "--from", "earliest")
        system.start("trainer", "trainer")
        meta = _settle(settings, system.logs / "trainer.log", 40.0, deadline_s)
        embeddings = version_embeddings(EmbeddingClient.from_settings(settings.redis).current())
        cycles = [
            line
            for line in system.log("trainer").splitlines()
            if "trainer: cycle" in line and "training on" not in line
        ]
        print("\n".join(cycles), flush=True)
    seconds = time.monotonic() - began
    return {
        **_scores(embeddings, holdout, items),
        "version": meta["version"],
        "samples": meta["info"].get("samples"),
        "cycles": cycles,
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratings", type=Path, help=f"default: {MOVIELENS} if present")
    parser.add_argument("--format", default="csv")
    parser.add_argument("--synthetic", action="store_true", help="synthetic data instead")
    parser.add_argument("--batch-runs", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=1800, help="seconds per stream run")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a setting for batch and the stream alike (e.g. training.workers=1: one Word2Vec "
        "thread, so equal corpora give equal models)",
    )
    args = parser.parse_args()
    settings, _ = private_settings(Path(tempfile.gettempdir()) / "walkstream-parity", *args.set)
    with tempfile.TemporaryDirectory() as tmp_dir:
        if args.synthetic or (args.ratings is None and not MOVIELENS.exists()):
            spec = SyntheticSpec(users=2_000, items=1_000, communities=20, events=100_000)
            ratings, fmt, name = generate(Path(tmp_dir), spec).ratings_path, "csv", "synthetic"
        else:
            ratings, fmt = args.ratings or MOVIELENS, args.format
            name = ratings.parent.name
        columns, _ = load_events(ratings, fmt, settings.events)
    sequences = user_sequences(*columns, settings.events.high_rating)
    holdout = temporal_holdout(sequences)
    events = _training_events(holdout)
    print(f"{name}: {len(events):,} training events, {len(holdout.queries):,} held-out cases")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "data": name,
        "events": len(events),
    }
    result["batch"] = _batch(settings, holdout, args.batch_runs)
    result["stream"] = _stream(holdout, events, False, args.deadline, args.set)
    result["ratio"] = result["stream"]["hit_rate"] / result["batch"]["hit_rate"]
    print(f"stream: HR@10 {result['stream']['hit_rate']:.4f}, ratio {result['ratio']:.3f}")
    result["replay"] = _stream(holdout, events, True, args.deadline, args.set)
    result["replay_ratio"] = result["replay"]["hit_rate"] / result["batch"]["hit_rate"]
    suffix = "".join(f"-{a}" for a in args.set)
    out = args.out or ROOT / ".walkstream" / "bench" / f"parity-{name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for kind in ("batch", "stream", "replay"):
        scores = result[kind]
        print(
            f"{kind:<7} HR@10 {scores['hit_rate']:.4f}  NDCG@10 {scores['ndcg']:.4f}  "
            f"coverage {scores['coverage']:.1%}"
        )
    print(
        f"stream / batch {result['ratio']:.3f}; bounded replay / batch {result['replay_ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
