"""Trainer and serving benchmark (`make bench`): each number against a baseline in the same run.

- publish: `write_version` + `switch_to` of N float32 vectors (dim 64) to a private local
  Redis, against the reference's layout (one SET per item of the vector as text, each its own
  round trip, as its Jedis loop does; also pipelined, a stronger baseline);
- switch: latency of `switch_to` alone (one read, one MULTI);
- training: walkstream's `train_full` against raw gensim `Word2Vec(...)`, same corpus and
  parameters, words/s;
- incremental: a cycle on 10% new walks (+ replay) against a full retrain on the whole corpus:
  time, and same-community precision@10 on the synthetic planted communities;
- cold: a running Trainer; items announced on the items topic one by one; time until each is
  readable through `EmbeddingClient`.

Repeats are interleaved; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import Word2Vec

from batch.evaluate import community_precision
from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, TrainingSettings
from streaming.embeddings.graph import transition_graph, user_sequences
from streaming.embeddings.labels import load_communities
from streaming.embeddings.vectors import Embeddings
from streaming.embeddings.walks import WalkSampler, as_sentences
from streaming.embeddings.word2vec import trained_vectors
from streaming.rating_files import load_events
from streaming.runtime import LocalStack
from streaming.store import EmbeddingClient, connect
from streaming.store.versions import VersionKeys, switch_to, write_version
from streaming.trainer import Trainer
from streaming.trainer.model import train_full, train_incremental
from tests.benchmarks.stack import private_settings
from tests.kafka_records import send_raw

ROOT = Path(__file__).resolve().parents[2]


def _median_rate(count: int, seconds: list[float]) -> float:
    return count / statistics.median(seconds)


def bench_publish(settings: Settings, n: int, reference_n: int, repeats: int) -> dict[str, Any]:
    client = connect(settings.redis)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 64)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    texts = [" ".join(f"{x:.6f}" for x in row) for row in vectors[:reference_n]]
    ours, reference, pipelined, switches = [], [], [], []
    for repeat in range(repeats):
        prefix = f"bench{repeat}"
        began = time.perf_counter()
        version = write_version(client, prefix, ids, vectors, [], {"bench": repeat})
        switch_to(client, prefix, version)
        ours.append(time.perf_counter() - began)
        other = write_version(client, prefix, ids[:10], vectors[:10], [], {})
        for target in [other, version] * 25:  # switch back and forth
            began = time.perf_counter()
            switch_to(client, prefix, target)
            switches.append(time.perf_counter() - began)
        client.delete(*VersionKeys(prefix).of_version(version))

        began = time.perf_counter()
        for item, text in zip(ids[:reference_n].tolist(), texts, strict=True):
            client.set(f"i2vEmb:{item}", text)
        reference.append(time.perf_counter() - began)

        began = time.perf_counter()
        with client.pipeline(transaction=False) as pipe:
            for start in range(0, n, 2_000):
                for item in range(start, min(n, start + 2_000)):
                    pipe.set(f"i2vEmbP:{item}", texts[item % reference_n])
                pipe.execute()
        pipelined.append(time.perf_counter() - began)
        client.flushdb()
        print(
            f"publish run {repeat + 1}: walkstream {n / ours[-1]:,.0f}/s, one SET per key "
            f"{reference_n / reference[-1]:,.0f}/s, pipelined text SETs {n / pipelined[-1]:,.0f}/s",
            flush=True,
        )
    rate = _median_rate(n, ours)
    return {
        "vectors": n,
        "dim": 64,
        "walkstream_per_s": rate,
        "reference_one_set_per_key_per_s": _median_rate(reference_n, reference),
        "reference_pipelined_per_s": _median_rate(n, pipelined),
        "ratio_vs_reference": rate / _median_rate(reference_n, reference),
        "ratio_vs_pipelined": rate / _median_rate(n, pipelined),
        "switch_ms_median": 1000 * statistics.median(switches),
        "switch_ms_p99": 1000 * float(np.percentile(switches, 99)),
    }


def _walk_corpora(
    tmp: Path, settings: Settings
) -> tuple[list[list[str]], list[list[str]], dict[int, int]]:
    """Walks on a synthetic graph: an older corpus from the first 90% of the events, and 10%
    as many new walks from the graph of all events (new items and edges included)."""
    spec = SyntheticSpec(users=6_000, items=5_000, communities=50, events=300_000, seed=3)
    data = generate(tmp / "synthetic", spec)
    columns, _ = load_events(data.ratings_path, "csv", settings.events)
    cut = np.quantile(columns.event_time, 0.9)
    old = columns.event_time <= cut

    def walks(mask: np.ndarray, n: int, seed: int) -> list[list[str]]:
        sequences = user_sequences(
            columns.user_id[mask],
            columns.item_id[mask],
            columns.rating[mask],
            columns.event_time[mask],
            3.5,
        )
        graph = transition_graph(sequences)
        return as_sentences(WalkSampler(graph).sample(n, 10, seed), graph.items)

    everything = np.ones(len(columns.event_time), dtype=bool)
    return walks(old, 100_000, 1), walks(everything, 10_000, 2), load_communities(data.items_path)


def _precision(model: Word2Vec, communities: dict[int, int]) -> float:
    ids, vectors = trained_vectors(model)
    return community_precision(Embeddings(ids, vectors, np.zeros(len(ids), bool)), communities)


def bench_training(
    corpus: list[list[str]], training: TrainingSettings, repeats: int
) -> dict[str, Any]:
    words = sum(len(s) for s in corpus) * training.epochs
    ours, raw = [], []
    for repeat in range(repeats):
        began = time.perf_counter()
        train_full(corpus, training)
        ours.append(time.perf_counter() - began)
        began = time.perf_counter()
        Word2Vec(
            sentences=corpus,
            vector_size=training.vector_size,
            window=training.window,
            sg=int(training.sg),
            hs=int(training.hs),
            negative=training.negative,
            ns_exponent=training.ns_exponent,
            sample=training.sample,
            min_count=training.min_count,
            epochs=training.epochs,
            alpha=training.alpha,
            min_alpha=training.min_alpha,
            workers=training.workers or 2,
            seed=training.seed,
        )
        raw.append(time.perf_counter() - began)
        print(
            f"training run {repeat + 1}: walkstream {words / ours[-1]:,.0f} words/s, "
            f"raw gensim {words / raw[-1]:,.0f} words/s",
            flush=True,
        )
    return {
        "words": words,
        "walkstream_words_per_s": _median_rate(words, ours),
        "gensim_words_per_s": _median_rate(words, raw),
        "ratio": statistics.median(raw) / statistics.median(ours),
    }


def bench_incremental(
    old: list[list[str]],
    new: list[list[str]],
    communities: dict[int, int],
    training: TrainingSettings,
    replay: int,
    repeats: int,
    tmp: Path,
) -> dict[str, Any]:
    base = train_full(old, training)
    base.save(str(tmp / "base.w2v"))
    rng = np.random.default_rng(0)
    replayed = [old[i] for i in rng.choice(len(old), size=replay, replace=False)]
    full_s, incremental_s, full_p, incremental_p = [], [], [], []
    for repeat in range(repeats):
        began = time.perf_counter()
        full = train_full([*old, *new], training)
        full_s.append(time.perf_counter() - began)
        model = Word2Vec.load(str(tmp / "base.w2v"))
        began = time.perf_counter()
        train_incremental(model, new, replayed)
        incremental_s.append(time.perf_counter() - began)
        full_p.append(_precision(full, communities))
        incremental_p.append(_precision(model, communities))
        print(
            f"incremental run {repeat + 1}: {incremental_s[-1]:.1f}s vs full {full_s[-1]:.1f}s; "
            f"precision@10 {incremental_p[-1]:.3f} vs {full_p[-1]:.3f}",
            flush=True,
        )
    return {
        "old_walks": len(old),
        "new_walks": len(new),
        "replayed": replay,
        "full_s": statistics.median(full_s),
        "incremental_s": statistics.median(incremental_s),
        "cost_ratio": statistics.median(incremental_s) / statistics.median(full_s),
        "full_precision": statistics.median(full_p),
        "incremental_precision": statistics.median(incremental_p),
        "precision_ratio": statistics.median(incremental_p) / statistics.median(full_p),
    }


def bench_cold(settings: Settings, items: int, old: list[list[str]]) -> dict[str, Any]:
    topics = settings.kafka.topics
    walks = [
        (None, json.dumps({"kind": "walk", "items": list(map(int, w))}).encode())
        for w in old[:20_000]
    ]
    send_raw(settings, topics.samples, walks[:10_000])
    trainer = Trainer(settings, report=lambda line: print(line, flush=True))
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, kwargs={"stop": stop})
    thread.start()
    client = EmbeddingClient.from_settings(settings.redis)
    try:
        deadline = time.monotonic() + 300
        while client.version is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no first version within 300 s")
            time.sleep(0.1)
        known = [int(w[0]) for w in old[:50]]
        # measure while the next cycle trains: its trigger is already on its way
        send_raw(settings, topics.samples, walks[10_000:])
        latencies = []
        for k in range(items):
            item = 10_000_000 + k
            record = {"item_id": item, "first": True, "neighbours": {str(known[k % 50]): 1}}
            sent = time.monotonic()
            send_raw(settings, topics.items, [(str(item).encode(), json.dumps(record).encode())])
            while not client.vectors([item]):
                if time.monotonic() - sent > 30:
                    raise RuntimeError(f"cold item {item} not readable after 30 s")
                time.sleep(0.005)
            latencies.append(time.monotonic() - sent)
    finally:
        stop.set()
        thread.join()
    return {
        "items": items,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "max_s": max(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--reference-vectors", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-items", type=int, default=200)
    parser.add_argument(
        "--parts",
        default="publish,training,incremental,cold",
        help="comma-separated subset of: publish, training, incremental, cold",
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "trainer.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, _ = private_settings(
            tmp / "home",
            f"trainer.state_dir={tmp / 'trainer'}",
            "trainer.metrics_port=0",
            "trainer.min_new_samples=10000",
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            parts = set(args.parts.split(","))
            if "publish" in parts:
                results["publish"] = bench_publish(
                    settings, args.vectors, args.reference_vectors, args.repeats
                )
            if parts & {"training", "incremental", "cold"}:
                print("sampling walks on a synthetic graph ...", flush=True)
                old, new, communities = _walk_corpora(tmp, settings)
            if "training" in parts:
                results["training"] = bench_training(old, settings.training, args.repeats)
            if "incremental" in parts:
                results["incremental"] = bench_incremental(
                    old,
                    new,
                    communities,
                    settings.training,
                    int(settings.trainer.walk_replay_ratio * len(new)),
                    args.repeats,
                    tmp,
                )
            if "cold" in parts:
                results["cold"] = bench_cold(settings, args.cold_items, old)
        finally:
            stack.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
