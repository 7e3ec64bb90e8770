"""Full replay (`make bench-replay`): a large synthetic topic from `earliest` to `latest`.

Runs its own Kafka on free loopback ports, writes `--events` synthetic events (10 million by
default) once, then runs `walkstream job --from earliest --until latest` and reports its
wall time (process start to exit, start-up included), the net runtime Flink reports, and the
peak resident memory of the job's whole process tree (the Python client and the JVM of the
mini-cluster), sampled every half second from /proc.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streaming.runtime import LocalStack
from tests.benchmarks.stack import private_settings, synthetic_topic

ROOT = Path(__file__).resolve().parents[2]


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and every process below it."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process ended while we looked
            continue
        pid = int(status.parent.name)
        parent = re.search(r"^PPid:\s+(\d+)", text, re.M)
        resident = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        children.setdefault(int(parent.group(1)) if parent else 0, []).append(pid)
        rss[pid] = int(resident.group(1)) * 1024 if resident else 0
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "replay.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, assignments = private_settings(
            tmp / "home",
            "kafka.topics.ratings=bench.ratings",
            f"flink.parallelism={args.parallelism}",
            f"flink.checkpoint_dir={tmp / 'checkpoints'}",
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            synthetic_topic(
                settings, tmp, "bench.ratings", args.events, items=20_000, communities=100, seed=11
            )
            flags = [part for a in assignments for part in ("--set", a)]
            began = time.monotonic()
            job = subprocess.Popen(
                [sys.executable, "-m", "streaming.cli", *flags, "job", "--from", "earliest",
                 "--until", "latest"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            peak = 0
            while job.poll() is None:
                peak = max(peak, _tree_rss_bytes(job.pid))
                time.sleep(0.5)
            wall = time.monotonic() - began
            out = job.stdout.read() if job.stdout else ""
            assert job.returncode == 0, out
            net = re.search(r"finished after ([\d.]+)s", out)
        finally:
            stack.down()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "events": args.events,
        "parallelism": args.parallelism,
        "wall_s": wall,
        "net_s": float(net.group(1)) if net else None,
        "peak_rss_bytes": peak,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"replay of {args.events:,} events: {wall:.0f} s wall ({args.events / wall:,.0f} "
        f"events/s), net {result['net_s']} s, peak memory {peak / 2**30:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
