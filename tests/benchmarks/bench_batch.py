"""Batch benchmarks (`make bench`): walk sampling vs pecanpy, whole-batch wall time, quality.

Speeds are measured side by side in one run, repeated, and reported as medians with the
baseline's median and the ratio, because the machine is shared and noisy.

- walks: 200,000 walks of 10 items on a seeded random graph of 20,000 items and >= 1M
  weighted edges; ours (`streaming.embeddings.walks.WalkSampler`) against pecanpy's
  first-order walks
  (`PreCompFirstOrder`, p = q = 1, numba, one thread per core), which run in their own
  virtualenv (pecanpy pins numpy < 2) and are driven over a pipe so runs interleave.
- batch: `walkstream batch` on ml-latest-small, wall time of the whole command.
- quality: `walkstream eval` on ml-latest-small, HR@10 against the reference configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streaming.embeddings.graph import TransitionGraph
from streaming.embeddings.walks import WalkSampler, as_sentences

ROOT = Path(__file__).resolve().parents[2]
ML_SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small" / "ratings.csv"
N_ITEMS, N_WALKS, LENGTH = 20_000, 200_000, 10

_PECANPY_SERVER = """
import json, sys, time
from pecanpy import pecanpy
graph = pecanpy.PreCompFirstOrder(p=1, q=1, workers=int(sys.argv[2]), verbose=False, random_state=0)
graph.read_edg(sys.argv[1], weighted=True, directed=True)
walk_stage = pecanpy.PreCompFirstOrder._random_walks
timing = {}
def timed(*args):
    began = time.perf_counter()
    out = walk_stage(*args)
    timing["walk_stage"] = time.perf_counter() - began
    return out
graph._random_walks = timed
per_node = int(sys.argv[3]) // graph.num_nodes
graph.simulate_walks(1, 2)  # compile the numba code before anything is timed
print(json.dumps({"nodes": graph.num_nodes, "walks_per_node": per_node}), flush=True)
for line in sys.stdin:
    began = time.perf_counter()
    walks = graph.simulate_walks(per_node, int(sys.argv[4]) - 1)  # walk_length counts hops
    total = time.perf_counter() - began
    tokens = sum(len(walk) for walk in walks)
    print(json.dumps({"total": total, "walk_stage": timing["walk_stage"],
                      "walks": len(walks), "tokens": tokens}), flush=True)
"""


def _graph(seed: int = 0) -> TransitionGraph:
    """A skewed random graph: popular sources and targets, >= 1M distinct weighted edges."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    popularity /= popularity.sum()
    n = 1_700_000
    src = rng.choice(N_ITEMS, n, p=popularity) + 1
    dst = rng.choice(N_ITEMS, n, p=popularity) + 1
    keep = src != dst
    counts = rng.geometric(0.3, keep.sum())
    # every item has at least one out-edge, so both samplers see the same node set
    ring = np.arange(1, N_ITEMS + 1)
    return TransitionGraph.from_pairs(
        np.concatenate([src[keep], ring]),
        np.concatenate([dst[keep], np.roll(ring, -1)]),
        np.concatenate([counts, np.ones(N_ITEMS, dtype=np.int64)]),
    )


def bench_walks(pecanpy_python: str, repeats: int) -> dict[str, Any]:
    graph = _graph()
    print(f"walks: graph of {graph.n_nodes:,} items and {graph.n_edges:,} edges", flush=True)
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        edges = Path(tmp) / "edges.tsv"
        np.savetxt(
            edges,
            np.c_[graph.items[graph.sources], graph.items[graph.indices], graph.counts],
            fmt="%d",
            delimiter="\t",
        )
        server = subprocess.Popen(
            [
                pecanpy_python,
                "-c",
                _PECANPY_SERVER,
                str(edges),
                str(threads),
                str(N_WALKS),
                str(LENGTH),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdin is not None
        assert server.stdout is not None
        print(f"walks: pecanpy ready {server.stdout.readline().strip()}", flush=True)
        sampler = WalkSampler(graph)
        ours, ours_lists, theirs, theirs_stage, tokens = [], [], [], [], {}
        for repeat in range(repeats):
            began = time.perf_counter()
            walks = sampler.sample(N_WALKS, LENGTH, seed=repeat)
            ours.append(time.perf_counter() - began)
            as_lists = as_sentences(walks, graph.items)
            ours_lists.append(time.perf_counter() - began)
            tokens["ours"] = int((walks >= 0).sum())
            server.stdin.write("run\n")
            server.stdin.flush()
            result = json.loads(server.stdout.readline())
            theirs.append(result["total"])
            theirs_stage.append(result["walk_stage"])
            tokens["pecanpy"] = result["tokens"]
            assert len(as_lists) == result["walks"] == N_WALKS
            print(
                f"walks: run {repeat + 1}: ours {ours[-1]:.3f}s (+lists {ours_lists[-1]:.3f}s), "
                f"pecanpy {theirs_stage[-1]:.3f}s walk stage, {theirs[-1]:.3f}s total",
                flush=True,
            )
        server.stdin.close()
        server.wait()

    def rate(seconds: list[float], who: str) -> float:
        return tokens[who] / statistics.median(seconds)

    result = {
        "graph": {"items": graph.n_nodes, "edges": graph.n_edges},
        "walks": N_WALKS,
        "length": LENGTH,
        "threads": threads,
        "repeats": repeats,
        "tokens": tokens,
        "ours_steps_per_s": rate(ours, "ours"),
        "ours_with_token_lists_steps_per_s": rate(ours_lists, "ours"),
        "pecanpy_walk_stage_steps_per_s": rate(theirs_stage, "pecanpy"),
        "pecanpy_simulate_walks_steps_per_s": rate(theirs, "pecanpy"),
    }
    result["ratio_vs_walk_stage"] = (
        result["ours_steps_per_s"] / result["pecanpy_walk_stage_steps_per_s"]
    )
    result["ratio_vs_simulate_walks"] = (
        result["ours_with_token_lists_steps_per_s"] / result["pecanpy_simulate_walks_steps_per_s"]
    )
    return result


def _walkstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming.cli", *args], capture_output=True, text=True, check=True
    )


def bench_batch(repeats: int) -> dict[str, Any]:
    seconds, coverage = [], []
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(repeats):
            began = time.perf_counter()
            _walkstream("batch", "--ratings", str(ML_SMALL), "--out", out)
            seconds.append(time.perf_counter() - began)
            meta = json.loads((Path(out) / "meta.json").read_text())
            coverage.append(meta["coverage"])
            print(
                f"batch: run {repeat + 1}: {seconds[-1]:.1f}s, coverage {coverage[-1]:.1%}",
                flush=True,
            )
    return {
        "median_s": statistics.median(seconds),
        "runs_s": seconds,
        "coverage": min(coverage),
        "steps_s": meta["seconds"],
    }


def bench_quality() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "eval.json"
        run = _walkstream("eval", "--ratings", str(ML_SMALL), "--json", str(path))
        print(run.stdout[run.stdout.find("variant ") :], flush=True)
        rows = {row["variant"]: row for row in json.loads(path.read_text())["results"]}
    ours = rows["walkstream"]["hit_rate"]
    return {
        "hr10": {name: row["hit_rate"] for name, row in rows.items()},
        "ndcg10": {name: row["ndcg"] for name, row in rows.items()},
        "coverage": rows["walkstream"]["coverage"],
        "gain_vs_reference_item2vec": ours / rows["reference-item2vec"]["hit_rate"] - 1,
        "gain_vs_reference_deepwalk": ours / rows["reference-deepwalk"]["hit_rate"] - 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pecanpy-python", required=True, help="python of a venv with pecanpy")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "batch.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    results["walks"] = bench_walks(args.pecanpy_python, args.repeats)
    if ML_SMALL.is_file():
        results["batch_ml_small"] = bench_batch(3)
        results["quality_ml_small"] = bench_quality()
    else:
        print(f"{ML_SMALL} not found: skipping the ml-latest-small benchmarks")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    walks = results["walks"]
    million = {key: value / 1e6 for key, value in walks.items() if key.endswith("_per_s")}
    print(
        f"\nwalks: ours {million['ours_steps_per_s']:.1f}M steps/s, pecanpy walk stage "
        f"{million['pecanpy_walk_stage_steps_per_s']:.2f}M: x{walks['ratio_vs_walk_stage']:.1f}; "
        f"as token lists ours {million['ours_with_token_lists_steps_per_s']:.1f}M, pecanpy "
        f"simulate_walks {million['pecanpy_simulate_walks_steps_per_s']:.2f}M: "
        f"x{walks['ratio_vs_simulate_walks']:.1f}"
    )
    if "batch_ml_small" in results:
        batch, quality = results["batch_ml_small"], results["quality_ml_small"]
        hr = quality["hr10"]
        print(f"batch: ml-latest-small in {batch['median_s']:.1f}s (median of 3)")
        print(f"batch: coverage {batch['coverage']:.1%}")
        print(
            f"quality: HR@10 {hr['walkstream']:.4f}; reference item2vec "
            f"{hr['reference-item2vec']:.4f} ({quality['gain_vs_reference_item2vec']:+.0%}), "
            f"reference deepwalk {hr['reference-deepwalk']:.4f} "
            f"({quality['gain_vs_reference_deepwalk']:+.0%})"
        )
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
