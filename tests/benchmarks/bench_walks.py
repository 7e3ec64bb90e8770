"""Walk generation (`make bench`): walk steps per second through the running job, per walk
stage, parallelism and Python execution mode.

Runs its own Kafka on free loopback ports, writes a synthetic topic, and for each variant
("STAGE:PARALLELISM", `stream.walk_stage` and `flink.parallelism`) starts the job from
`earliest` with `--walks-per-weight` walks per transition and lets it run until the samples
stop growing. A variant runs in Flink's mini-cluster (one JVM, whose embedded Python
interpreter all tasks share in thread mode; with ":process", `flink.python_execution_mode`
process, each task slot has a Python process), or with ":cluster" on a standalone cluster
started for the run with one TaskManager (JVM and interpreter) per task; ":batch_ms=MS" sets
`stream.batch_ms` (how long the item stage's batches are). A walk of n items
made n - 1 steps (hops). The rate is the steps of all samples over the time between the
first and the last sample's Kafka timestamp (the job's start-up is not in it), and, steady,
over the second half of that time (once the JIT has compiled the hot code). Also per run:
messages on the feedback topic per step (routed walks send one per hop that leaves a task;
replicated ones none), the peak resident memory of the processes that run the tasks, in all
and per TaskManager (mini-cluster: the job's client and its one JVM, JobManager and
TaskManager in one, with its Python processes in process mode; cluster: each TaskManager's
JVM with its Python, not the JobManager, which runs no task), and, in the steady half, the
CPU time the job's processes spent per step and how many of the machine's cores were busy
(whether the machine, not the job, was the limit). Variants take turns within each of
`--repeats` rounds, so they share the machine's moods; medians per variant.

The baseline, around each run: the batch sampler (`WalkSampler`, one thread) drawing as many
walks of the same length on the graph of all the topic's events, timed 3 times just before
the job starts and 3 times just after it stops (median of the 6). A run's rate over its
baseline says how the job compares with the batch sampler on this machine at that time,
whatever the machine's speed then.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer

from streaming.config import Settings, load_settings, parse_assignments
from streaming.embeddings.graph import transition_count, transition_graph, user_sequences
from streaming.embeddings.walks import WalkSampler
from streaming.errors import RuntimeServiceError
from streaming.rating_files import load_events
from streaming.records import read_sample
from streaming.runtime import LocalStack
from streaming.topics import topic_partitions
from tests.benchmarks.stack import private_settings, synthetic_topic
from tests.flink_cluster import standalone_cluster
from tests.kafka_records import read_topic

ROOT = Path(__file__).resolve().parents[2]
MEASURES = (
    "rate",
    "baseline_rate",
    "rate_over_baseline",
    "steady_rate",
    "hop_messages_per_step",
    "peak_rss_bytes",
    "peak_rss_bytes_per_task_manager",
    "job_cpu_us_per_step",
    "machine_busy_cores",
)


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


def _session_files(sessions: list[int], name: str) -> Iterator[tuple[int, str]]:
    """(session, text of /proc/PID/NAME) of every process in one of `sessions`."""
    for path in Path("/proc").glob(f"[0-9]*/{name}"):
        try:
            session = os.getsid(int(path.parent.name))
            if session not in sessions:
                continue
            text = path.read_text()
        except (OSError, ValueError):  # the process ended meanwhile
            continue
        yield session, text


def _peak_rss(sessions: list[int]) -> dict[int, int]:
    """Bytes per session: the sum of the peak resident sets of its processes (VmHWM)."""
    peaks = dict.fromkeys(sessions, 0)
    for session, text in _session_files(sessions, "status"):
        fields = dict(line.split(":", 1) for line in text.splitlines())
        if "VmHWM" in fields:
            peaks[session] += int(fields["VmHWM"].split()[0]) * 1024
    return peaks


@contextmanager
def _job(flags: list[str], task_managers: int | None, root: Path) -> Iterator[list[int]]:
    """Run the job from `earliest`: as `walkstream job` (Flink's mini-cluster in one process),
    or submitted to a standalone cluster of `task_managers` TaskManagers started under `root`.
    Yield the ids of the process sessions that run its tasks (killed on exit)."""
    arguments = [*flags, "job", "--from", "earliest"]
    if task_managers is None:
        job = subprocess.Popen(
            [sys.executable, "-m", "streaming.cli", *arguments],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            yield [job.pid]
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    else:
        with standalone_cluster(root, task_managers) as cluster:
            cluster.submit(arguments, root / "submit.log", detached=True)
            yield [process.pid for process in cluster.task_managers]


def _session_cpu_s(sessions: list[int]) -> float:
    """CPU seconds (user + system, with waited-for children) of the processes in `sessions`."""
    ticks = 0
    for _, text in _session_files(sessions, "stat"):
        fields = text.rsplit(")", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, summed over its cores."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


class _CpuSampler(threading.Thread):
    """Every half second: (wall time, the job's CPU seconds, the machine's busy and all CPU
    seconds), to split CPU by the time window the samples were written in."""

    def __init__(self, sessions: list[int]) -> None:
        super().__init__(daemon=True)
        self.sessions = sessions
        self.rows: list[tuple[float, float, float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.rows.append((time.time(), _session_cpu_s(self.sessions), *_machine_cpu_s()))

    def window(self, start: float, end: float) -> tuple[float, float]:
        """(the job's CPU seconds, the machine's busy cores) between `start` and `end`, from
        the last sample at or before `start` to the first at or after `end`."""
        before = max((row for row in self.rows if row[0] <= start), key=lambda row: row[0])
        after = min((row for row in self.rows if row[0] >= end), key=lambda row: row[0])
        busy, every = after[2] - before[2], after[3] - before[3]
        return after[1] - before[1], (os.cpu_count() or 1) * busy / every if every else 0.0


def _run(
    settings: Settings,
    flags: list[str],
    task_managers: int | None,
    root: Path,
    quiet_s: float,
    start_s: float = 180,
) -> dict[str, float]:
    """Run the job until no new sample arrived for `quiet_s` after the first; measure its
    samples, the feedback topic's messages, the peak memory of its processes and the CPU they
    and the whole machine spent while the samples were written."""
    topic = settings.kafka.topics.samples
    peaks: dict[int, int] = {}
    with _job(flags, task_managers, root) as sessions:
        sampler = _CpuSampler(sessions)
        sampler.start()
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
            peaks = {
                session: max(peaks.get(session, 0), peak)
                for session, peak in _peak_rss(sessions).items()
            }
            print(f"  {count:,} walk records so far", flush=True)
        hop_messages = _end(settings, settings.kafka.topics.walk_hops)
        sampler.stopped.set()
        sampler.join()
    # Reading back runs at about 40,000 records a second here: allow for 10,000.
    records = read_topic(settings, topic, timeout_s=60 + seen / 10_000)
    walks = [
        (stamp, sample)
        for _, _, stamp, _, value in records
        if (sample := read_sample(value)).kind == "walk"
    ]
    first, last = min(stamp for stamp, _ in walks) / 1000, max(stamp for stamp, _ in walks) / 1000
    steps = sum(len(sample.items) - 1 for _, sample in walks)
    # The second half of the run's time: the JIT has compiled the hot code by then.
    middle = (first + last) / 2
    steady_steps = sum(len(sample.items) - 1 for stamp, sample in walks if stamp / 1000 > middle)
    job_cpu_s, busy_cores = sampler.window(middle, last)
    return {"walks": len(walks), "steps": steps, "seconds": last - first,
            "rate": steps / (last - first), "steady_rate": steady_steps / (last - middle),
            "hop_messages_per_step": hop_messages / steps,
            "peak_rss_bytes": sum(peaks.values()),
            "peak_rss_bytes_per_task_manager": max(peaks.values()),
            "job_cpu_us_per_step": 1e6 * job_cpu_s / steady_steps,
            "machine_busy_cores": busy_cores}  # fmt: skip


class _Baseline:
    """The batch sampler on the graph of a ratings file: one thread, as many walks as the job
    starts at one walk per transition, of the job's length."""

    def __init__(self, settings: Settings, ratings: Path, walks_per_weight: float) -> None:
        columns, _ = load_events(ratings, "csv", settings.events)
        sequences = user_sequences(*columns, settings.events.high_rating)
        self.sampler = WalkSampler(transition_graph(sequences, settings.walks.half_life_s))
        self.walks = round(walks_per_weight * transition_count(sequences))
        self.length = settings.walks.length
        self.sampler.sample(1_000, self.length, seed=0, threads=1)  # compile before timing

    def rates(self, timings: int = 3) -> list[float]:
        """Walk steps per second, `timings` times."""
        rates = []
        for seed in range(timings):
            began = time.perf_counter()
            walks = self.sampler.sample(self.walks, self.length, seed=seed, threads=1)
            seconds = time.perf_counter() - began
            rates.append(int((walks >= 0).sum() - len(walks)) / seconds)
        return rates


@dataclass(frozen=True)
class _Variant:
    """One variant of `--variants`: "STAGE:PARALLELISM[:process][:cluster][:batch_ms=MS]"."""

    stage: str
    parallelism: int
    mode: str
    on_cluster: bool
    batch_ms: int | None

    @classmethod
    def parse(cls, text: str) -> _Variant:
        stage, parallelism, *options = text.split(":")
        batch_ms = None
        for option in options:
            if match := re.fullmatch(r"batch_ms=(\d+)", option):
                batch_ms = int(match[1])
            elif option not in ("process", "cluster"):
                raise ValueError(f"variant {text}: options are process, cluster and batch_ms=MS")
        mode = "process" if "process" in options else "thread"
        return cls(stage, int(parallelism), mode, "cluster" in options, batch_ms)

    def assignments(self) -> list[str]:
        """The settings the variant sets."""
        batching = [] if self.batch_ms is None else [f"stream.batch_ms={self.batch_ms}"]
        return [
            f"stream.walk_stage={self.stage}",
            f"flink.parallelism={self.parallelism}",
            f"flink.python_execution_mode={self.mode}",
            *batching,
        ]

    def label(self) -> str:
        place = "on the standalone cluster" if self.on_cluster else "in the mini-cluster"
        batching = [] if self.batch_ms is None else [f"batch_ms={self.batch_ms}"]
        return (
            f"{self.stage} walks at parallelism {self.parallelism} {place} "
            f"({', '.join([f'{self.mode} mode', *batching])})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--walks-per-weight", type=float, default=1.0)
    parser.add_argument(
        "--variants",
        default="replicated:1,replicated:2,replicated:1:process,replicated:2:process,routed:1,"
        "routed:2,replicated:1:cluster,replicated:2:cluster",
        help="STAGE:PARALLELISM[:process][:cluster][:batch_ms=MS],...: stream.walk_stage and "
        "flink.parallelism of each variant; `process` runs its Python functions in process "
        "mode (flink.python_execution_mode), not thread mode; `cluster` submits it to a "
        "standalone cluster of PARALLELISM TaskManagers; `batch_ms=MS` sets stream.batch_ms",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / ".walkstream" / "bench" / "walks.json")
    args = parser.parse_args()
    try:
        variants = {text: _Variant.parse(text) for text in args.variants.split(",")}
    except ValueError as error:
        parser.error(str(error))
    runs: dict[str, list[dict[str, float]]] = {text: [] for text in variants}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, assignments = private_settings(tmp / "home")
        stack = LocalStack(settings)
        stack.up()
        try:
            ratings = synthetic_topic(
                settings, tmp, "bench.ratings", args.events, items=5_000, communities=50, seed=3
            )
            baseline = _Baseline(settings, ratings, args.walks_per_weight)
            for repeat in range(args.repeats):
                for text, variant in variants.items():
                    run = f"w{repeat}-{text.replace(':', '-').replace('=', '')}"
                    extra = [
                        "kafka.topics.ratings=bench.ratings",
                        f"stream.group_id=bench-{run}",
                        f"stream.walks_per_weight={args.walks_per_weight}",
                        *variant.assignments(),
                        f"flink.checkpoint_dir={tmp / run / 'checkpoints'}",
                        *(f"kafka.topics.{name}=bench-{run}.{name}"
                          for name in ("dead_letter", "late", "samples", "items", "walk_hops")),
                    ]  # fmt: skip
                    run_settings = load_settings(
                        overrides=parse_assignments([*assignments, *extra])
                    )
                    flags = [part for a in [*assignments, *extra] for part in ("--set", a)]
                    task_managers = variant.parallelism if variant.on_cluster else None
                    before = baseline.rates()
                    result = _run(
                        run_settings, flags, task_managers, tmp / run / "cluster", quiet_s=20
                    )
                    result["baseline_rate"] = statistics.median([*before, *baseline.rates()])
                    result["rate_over_baseline"] = result["rate"] / result["baseline_rate"]
                    runs[text].append(result)
                    print(
                        f"{variant.label()}, round {repeat + 1}: "
                        f"{result['steps']:,} steps in {result['seconds']:.1f} s = "
                        f"{result['rate']:,.0f} steps/s (steady {result['steady_rate']:,.0f}; "
                        f"{result['rate_over_baseline']:.4f} of the baseline's "
                        f"{result['baseline_rate']:,.0f}), "
                        f"{result['hop_messages_per_step']:.3f} feedback messages per step, "
                        f"peak memory {result['peak_rss_bytes'] / 2**30:.2f} GiB "
                        f"({result['peak_rss_bytes_per_task_manager'] / 2**30:.2f} GiB per "
                        "TaskManager), "
                        f"{result['job_cpu_us_per_step']:.2f} CPU-us per step, machine "
                        f"{result['machine_busy_cores']:.2f} cores busy",
                        flush=True,
                    )
        finally:
            stack.down()
    medians = {
        variant: {key: statistics.median(run[key] for run in done) for key in MEASURES}
        for variant, done in runs.items()
    }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "events": args.events,
        "walks_per_weight": args.walks_per_weight,
        "runs": runs,
        "medians": medians,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for variant, median in medians.items():
        print(
            f"{variant}: {median['rate']:,.0f} steps/s (steady {median['steady_rate']:,.0f}; "
            f"{median['rate_over_baseline']:.4f} of the baseline's "
            f"{median['baseline_rate']:,.0f}), "
            f"{median['hop_messages_per_step']:.3f} "
            f"feedback messages per step, peak {median['peak_rss_bytes'] / 2**30:.2f} GiB, "
            f"{median['job_cpu_us_per_step']:.2f} CPU-us per step, machine "
            f"{median['machine_busy_cores']:.2f} cores busy (medians of {args.repeats})"
        )
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
