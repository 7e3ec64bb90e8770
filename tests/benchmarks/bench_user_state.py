"""Per-user state with and without `users.idle_ttl_s`, or per-item state with and without
`stream.item_idle_ttl_s` (`--of items`) (`make bench-replay`): a replay whose users, or items,
come once.

Runs its own Kafka on free loopback ports and writes `--events` events once: users arrive one
after another (a new one every `--arrival-s` seconds of event time), each rates
`--per-user` items (all kept) within a minute and never returns, among `--items` items (few
by default, so that per-item state stays small and the checkpoints measure per-user state).
Then replays
the topic twice (`job --from earliest --until latest`, hashmap state, a checkpoint every
10 s), without a TTL and with `--ttl-s`, and reports the size on disk of every completed
checkpoint (the job's whole state: per item and per user), the last one and the largest.
Without a TTL per-user state grows with every user ever seen; with one it holds only the users
active within the TTL.

With `--of items` the items come and go instead: a new item every `--item-arrival-s` seconds
of event time, each rated only while it is among the newest `--items`, so every item has
a few neighbours and then none. Both runs forget users after `--ttl-s` (so the checkpoints
measure per-item state); the second also forgets items after `--ttl-s`, swept every 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streaming.producer import produce_file
from streaming.runtime import LocalStack
from tests.benchmarks.stack import private_settings

ROOT = Path(__file__).resolve().parents[2]


_EPOCH = 1_600_000_000


def _users_once(
    path: Path,
    events: int,
    per_user: int,
    arrival_s: int,
    items_n: int,
    item_arrival_s: int | None = None,
) -> None:
    """Users who come once, a new one every `arrival_s` seconds of event time, each rating
    `per_user` items within a minute: any of `items_n` items, or with `item_arrival_s` (a new
    item every that many seconds) one of the `items_n` newest at the time."""
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(events // per_user), per_user)
    times = _EPOCH + users * arrival_s + rng.integers(0, 60, len(users))
    if item_arrival_s is None:
        items = rng.integers(1, items_n + 1, len(users))
    else:
        items = 1 + (times - _EPOCH) // item_arrival_s + rng.integers(0, items_n, len(users))
    order = np.argsort(times, kind="stable")
    with path.open("w") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for start in range(0, len(order), 1_000_000):
            part = order[start : start + 1_000_000]
            rows = zip(
                users[part].tolist(), items[part].tolist(), times[part].tolist(), strict=True
            )
            handle.writelines(f"{u},{i},5.0,{t}\n" for u, i, t in rows)


def _checkpoint_bytes(directory: Path) -> dict[int, int]:
    """Size of each completed checkpoint under `directory` (job id / chk-N)."""
    sizes = {}
    for metadata in directory.glob("*/chk-*/_metadata"):
        chk = metadata.parent
        sizes[int(chk.name.split("-")[1])] = sum(
            f.stat().st_size for f in chk.rglob("*") if f.is_file()
        )
    return sizes


def _replay(flags: list[str], checkpoints: Path) -> dict[str, Any]:
    began = time.monotonic()
    job = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", *flags, "job", "--from", "earliest",
         "--until", "latest"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen: dict[int, int] = {}
    while job.poll() is None:
        with contextlib.suppress(FileNotFoundError):  # a checkpoint deleted while summed
            seen |= _checkpoint_bytes(checkpoints)
        time.sleep(0.5)
    assert job.returncode == 0, f"the replay failed (exit {job.returncode})"
    ordered = [seen[k] for k in sorted(seen)]
    return {
        "wall_s": time.monotonic() - began,
        "checkpoints": len(ordered),
        "checkpoint_bytes": ordered,
        "last_bytes": ordered[-1] if ordered else None,
        "max_bytes": max(ordered) if ordered else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--arrival-s", type=int, default=1)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--ttl-s", type=int, default=3_600)
    parser.add_argument("--of", choices=("users", "items"), default="users")
    parser.add_argument("--item-arrival-s", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, help="default: .walkstream/bench/{users,items}-state.json"
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = ROOT / ".walkstream" / "bench" / f"{args.of[:-1]}-state.json"
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), **vars(args), "out": str(args.out)}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, assignments = private_settings(
            tmp / "home", "kafka.topics.ratings=bench.ratings", "flink.checkpoint_interval_ms=10000"
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            ratings = tmp / "ratings.csv"
            _users_once(
                ratings, args.events, args.per_user, args.arrival_s, args.items,
                None if args.of == "users" else args.item_arrival_s,
            )  # fmt: skip
            print(f"producing {args.events:,} events ...", flush=True)
            produce_file(settings, ratings, "csv", report=lambda _: None)
            for name, ttl in (("no_ttl", 0), ("ttl", args.ttl_s)):
                checkpoints = tmp / f"checkpoints-{name}"
                flags = [
                    part
                    for a in [
                        *assignments,
                        f"flink.checkpoint_dir={checkpoints}",
                        f"stream.group_id=bench-{name}",
                        f"kafka.topics.users=bench.users-{name}",
                        f"kafka.topics.samples=bench.samples-{name}",
                        f"kafka.topics.items=bench.items-{name}",
                        *(
                            [f"users.idle_ttl_s={ttl}"]
                            if args.of == "users"
                            else [
                                f"users.idle_ttl_s={args.ttl_s}",
                                f"stream.item_idle_ttl_s={ttl}",
                                "stream.refresh_interval_s=5",
                            ]
                        ),
                    ]
                    for part in ("--set", a)
                ]
                result[name] = _replay(flags, checkpoints)
                replay = result[name]
                print(
                    f"{name} ({args.of}' TTL {ttl} s): {replay['checkpoints']} checkpoints, "
                    f"last {replay['last_bytes']:,} bytes, largest {replay['max_bytes']:,} "
                    f"bytes, {replay['wall_s']:.0f} s",
                    flush=True,
                )
        finally:
            stack.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
