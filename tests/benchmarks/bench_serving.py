"""Serving benchmark (`make bench`): nearest items through `EmbeddingClient`.

A private Redis on a free loopback port; N items of dimension 64 in planted communities
(100 items around each of N/100 random centres, Gaussian noise of 0.5 per component: a
neighbour structure like a trained model's, where pure noise has none) published as whole
versions with the store's own `publish_version` (hash, index, switch). Measured:

- publish: writing the hash, building and storing the index, switching
  (`prepare_version`, then `switch_to`, as `publish_version` does); the index is ready
  when the version becomes current, so "index ready" is the whole publish; and how long a
  preloading client took to load the announced version (what `trainer.preload_s` must cover:
  the benchmark switches as soon as it has);
- the first 200 `similar()` calls right after a version becomes current, from a preloading
  client and from one that was reading the previous version and loads the new version's
  index on its first call, and 2,000 warm calls: p50 / p99 latency;
- recall@10 of `similar()` against exact cosine (NumPy brute force) on the same vectors;
- queries/s: `similar_many` in batches of 1,000 in one process, and `similar()` /
  `similar_many` from 2 processes at once;
- Redis memory per item of the version's vectors (hash) and index;
- baselines in the same run: an in-process HNSW library alone (usearch with float32
  vectors, 16 links and 64 candidates per insert and per search: build time, batched
  queries/s, recall@10 on the same vectors), the client's former exact path (every call
  downloads the version and sorts every score), and the exact scan of a cached matrix (what
  `similar()` does for a version without an index).

`make bench` runs it at 200,000 items (3 repeats) and at 1,000,000 (`--items 1000000
--repeats 1`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from streaming.config import RedisSettings, Settings
from streaming.runtime.services import RedisServer
from streaming.store import EmbeddingClient, connect
from streaming.store.index import Neighbours, unit_rows
from streaming.store.versions import (
    VersionKeys,
    decode_vector,
    prepare_version,
    switch_to,
)
from tests.benchmarks.stack import private_settings

ROOT = Path(__file__).resolve().parents[2]
DIM = 64


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), DIM)).astype(np.float32)
    noise = rng.standard_normal((n, DIM)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + np.float32(0.5) * noise


def _ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * float(np.percentile(seconds, 50)),
        "p99_ms": 1000 * float(np.percentile(seconds, 99)),
        "max_ms": 1000 * max(seconds),
    }


def _old_similar(settings: Settings, prefix: str, version: int, item: int, k: int) -> list[int]:
    """The client's former exact path: download the whole version, sort every score."""
    client = connect(settings.redis)
    keys = VersionKeys(prefix)
    raw = client.hgetall(keys.vectors(version))
    ids = [int(key) for key in raw]
    matrix = np.stack([decode_vector(blob) for blob in raw.values()])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    query = unit[ids.index(item)]
    order = np.argsort(-(unit @ query), kind="stable")
    client.close()
    return [ids[i] for i in order[: k + 1] if ids[i] != item][:k]


def _exact_top(unit: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    scores = unit[rows] @ unit.T
    scores[np.arange(len(rows)), rows] = -np.inf
    return np.argpartition(-scores, k, axis=1)[:, :k]


def _in_process_hnsw(
    unit: np.ndarray, rows: np.ndarray, truth: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """The HNSW library alone on the same vectors: float32, 16 links, 64 candidates."""
    began = time.perf_counter()
    index = Index(ndim=unit.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=64)
    index.add(np.arange(len(unit), dtype=np.uint64), unit)
    build_s = time.perf_counter() - began
    index.expansion_search = 64
    found = np.asarray(index.search(unit[rows], 11).keys).astype(np.int64)
    hits = [
        len(set(truth[i].tolist()) & (set(found[i].tolist()) - {int(rows[i])}))
        for i in range(len(rows))
    ]
    rates = []
    for _ in range(5):
        queries = unit[rng.integers(len(unit), size=1_000)]
        began = time.perf_counter()
        index.search(queries, 11)
        rates.append(1_000 / (time.perf_counter() - began))
    return {
        "build_s": build_s,
        "batched_per_s": statistics.median(rates),
        "recall_at_10": sum(hits) / (10 * len(rows)),
    }


def _worker(
    redis: dict[str, Any], n: int, mode: str, seconds: float, barrier: Any, out: Any
) -> None:
    client = EmbeddingClient.from_settings(RedisSettings.model_validate(redis))
    rng = np.random.default_rng()
    client.similar(0, 10)  # load the version before the clock starts
    barrier.wait()
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        if mode == "single":
            client.similar(int(rng.integers(n)), 10)
            done += 1
        else:
            client.similar_many(rng.integers(n, size=1_000).tolist(), 10)
            done += 1_000
    out.put(done / (time.perf_counter() - began))


def _concurrent(settings: Settings, prefix: str, n: int, mode: str, processes: int) -> float:
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(processes), context.Queue()
    # the local stack's password comes from its file: settings travel without secrets
    redis = settings.redis.model_copy(update={"key_prefix": prefix}).model_dump(mode="json")
    workers = [
        context.Process(target=_worker, args=(redis, n, mode, 5.0, barrier, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    rates = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(rates))


def bench(settings: Settings, n: int, repeats: int) -> dict[str, Any]:
    redis_client = connect(settings.redis)
    prefix = "serving"
    client = EmbeddingClient.from_settings(settings.redis.model_copy(update={"key_prefix": prefix}))
    ids = np.arange(n, dtype=np.int64)
    results: dict[str, Any] = {"items": n, "dim": DIM, "repeats": repeats}

    cold = EmbeddingClient.from_settings(settings.redis.model_copy(update={"key_prefix": prefix}))
    client.preload(block_s=0.2)
    prepare_s, preload_s, publish_s = [], [], []
    first_cold, after_cold, first_preloaded, after_preloaded = [], [], [], []
    for repeat in range(repeats):
        vectors = clustered(n, seed=repeat)
        began = time.perf_counter()
        version = prepare_version(redis_client, prefix, ids, vectors, [], {"bench": repeat})
        indexed = time.perf_counter()
        while client.preloaded != version:  # what trainer.preload_s must cover
            if time.perf_counter() - indexed > 600:
                raise RuntimeError(f"version {version} not preloaded within 600 s")
            time.sleep(0.01)
        preloaded = time.perf_counter()
        switch_to(redis_client, prefix, version, grace_s=60)
        current = time.perf_counter()
        prepare_s.append(indexed - began)
        preload_s.append(preloaded - indexed)
        publish_s.append(current - began - (preloaded - indexed))
        items = np.random.default_rng(100 + repeat).integers(n, size=200).tolist()
        for reader, first, after in (
            (client, first_preloaded, after_preloaded),
            (cold, first_cold, after_cold),
        ):
            latencies = []
            for item in items:
                asked = time.perf_counter()
                reader.similar(item, 10)
                latencies.append(time.perf_counter() - asked)
            first.append(latencies[0])
            after.extend(latencies)
        print(
            f"publish {repeat + 1}: hash and index {indexed - began:.2f}s "
            f"(+ preload {preloaded - indexed:.2f}s) + switch; first call preloaded "
            f"{1000 * first_preloaded[-1]:.1f} ms, not preloaded {1000 * first_cold[-1]:.0f} ms",
            flush=True,
        )
    results["publish"] = {
        "hash_and_index_s": statistics.median(prepare_s),
        "publish_s_without_preload_wait": statistics.median(publish_s),
        "vectors_per_s": n / statistics.median(publish_s),
        "preload_s": statistics.median(preload_s),
        "preload_s_max": max(preload_s),
    }
    results["after_switch_preloaded"] = {
        **_ms(after_preloaded),
        "first_calls": _ms(first_preloaded),
    }
    results["after_switch_not_preloaded"] = {**_ms(after_cold), "first_calls": _ms(first_cold)}
    cold.close()
    version = client.current().version

    rng = np.random.default_rng(7)
    warm = []
    for item in rng.integers(n, size=2_000).tolist():
        asked = time.perf_counter()
        client.similar(item, 10)
        warm.append(time.perf_counter() - asked)
    results["warm"] = _ms(warm)
    print(f"warm: {results['warm']}", flush=True)

    unit = unit_rows(vectors)
    rows = rng.choice(n, size=1_000, replace=False)
    truth = _exact_top(unit, rows, 10)
    found = client.similar_many(rows.tolist(), 10)
    hits = [len(set(truth[i].tolist()) & {item for item, _ in found[i]}) for i in range(len(rows))]
    results["recall_at_10"] = sum(hits) / (10 * len(rows))
    print(f"recall@10 {results['recall_at_10']:.4f}", flush=True)

    batched = []
    for _ in range(5):
        batch = rng.integers(n, size=1_000).tolist()
        began = time.perf_counter()
        client.similar_many(batch, 10)
        batched.append(1_000 / (time.perf_counter() - began))
    results["batched_per_s"] = statistics.median(batched)
    results["concurrent_2_processes_single_per_s"] = _concurrent(settings, prefix, n, "single", 2)
    results["concurrent_2_processes_batched_per_s"] = _concurrent(settings, prefix, n, "many", 2)
    print(
        f"queries/s: batched {results['batched_per_s']:,.0f}, 2 processes similar() "
        f"{results['concurrent_2_processes_single_per_s']:,.0f}, 2 processes batched "
        f"{results['concurrent_2_processes_batched_per_s']:,.0f}",
        flush=True,
    )

    scan = Neighbours(None, ids, unit)
    exact_rates, exact_latency = [], []
    for _ in range(3):
        queries = vectors[rng.integers(n, size=100)]
        began = time.perf_counter()
        scan.nearest(queries, 10, None)
        exact_rates.append(100 / (time.perf_counter() - began))
        began = time.perf_counter()
        scan.nearest(queries[:1], 10, None)
        exact_latency.append(time.perf_counter() - began)
    old = []
    for item in rng.integers(n, size=3).tolist():
        began = time.perf_counter()
        _old_similar(settings, prefix, version, item, 10)
        old.append(time.perf_counter() - began)
    results["baseline"] = {
        "former_exact_path_ms_per_query": 1000 * statistics.median(old),
        "cached_exact_scan_ms_per_query": 1000 * statistics.median(exact_latency),
        "cached_exact_scan_batched_per_s": statistics.median(exact_rates),
    }
    results["ratio_warm_p50_vs_former_exact"] = (
        results["baseline"]["former_exact_path_ms_per_query"] / results["warm"]["p50_ms"]
    )
    results["ratio_batched_vs_cached_exact"] = (
        results["batched_per_s"] / results["baseline"]["cached_exact_scan_batched_per_s"]
    )
    print(f"baseline: {results['baseline']}", flush=True)

    results["baseline"]["in_process_hnsw"] = _in_process_hnsw(unit, rows, truth, rng)
    print(f"in-process HNSW: {results['baseline']['in_process_hnsw']}", flush=True)

    keys = VersionKeys(prefix)
    vectors_bytes = int(redis_client.memory_usage(keys.vectors(version), samples=0) or 0)
    index_bytes = sum(
        int(redis_client.memory_usage(key, samples=0) or 0)
        for key in (keys.index(version), keys.index_rows(version))
    )
    results["redis_bytes_per_item"] = {"vectors": vectors_bytes / n, "index": index_bytes / n}
    print(f"Redis bytes per item: {results['redis_bytes_per_item']}", flush=True)
    client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    name = "serving.json" if args.items == 200_000 else f"serving-{args.items}.json"
    out: Path = args.out or ROOT / ".walkstream" / "bench" / name
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp_dir:
        settings, _ = private_settings(Path(tmp_dir) / "home")
        redis_server = RedisServer(settings)
        redis_server.start(report=print)
        try:
            results |= bench(settings, args.items, args.repeats)
        finally:
            redis_server.stop(report=print)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
