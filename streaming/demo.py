"""`walkstream demo`: the whole system on the local stack, in one command.

Starts Kafka and Redis (unless they already answer), then the streaming job and the trainer
as child processes in a fresh namespace of their own (topics, consumer groups, Redis key
prefix, state directories), streams a ratings file (default: synthetic data with planted
communities) through the producer, waits until every item the job has seen has a vector in
Redis, and shows what came out and what it measured. `--follow` keeps streaming (the same
events again, later in event time) and prints each new version. Ctrl-C stops everything
the demo started.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer

from batch.evaluate import community_precision
from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, TopicSettings, load_settings, parse_assignments
from streaming.core.events import Event
from streaming.core.sequences import UserSequence
from streaming.embeddings.labels import (
    Communities,
    item_groups,
    item_labels,
    load_communities,
    neighbour_table,
)
from streaming.embeddings.vectors import Embeddings
from streaming.errors import RuntimeServiceError, StoreError
from streaming.kafka_clients import kafka_admin, kafka_python_config
from streaming.plot import TimelinePoint, draw, version_embeddings
from streaming.producer import Pacer, ordered_events, produce_events
from streaming.rating_files import EventColumns, Format, load_events
from streaming.report import Report
from streaming.runtime import LocalStack
from streaming.store import EmbeddingClient
from streaming.store.connection import connect
from streaming.store.versions import drop_all
from streaming.topics import ensure_topics, topic_partitions

__all__ = ["DemoOptions", "DemoResult", "run_demo"]


_TOPIC_PREFIX = "demo-"
# Quicker cycles than a production default, so versions visibly follow the stream, and
# fewer walks per transition, so this 2-core machine's job keeps up at the default rate.
_TUNING = (
    "flink.checkpoint_interval_ms=2000",
    "stream.walks_per_weight=0.1",
    "trainer.min_new_samples=500",
    "trainer.interval_s=10",
    "trainer.metrics_port=0",
)
_SHOW_ITEMS = 4
_SHOW_NEIGHBOURS = 5
_STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class DemoOptions:
    ratings: Path | None
    """A ratings file to stream; None: synthetic data from `synthetic`."""
    format: Format
    synthetic: SyntheticSpec
    rate: float | None
    """Events per second sent; None: as fast as the producer goes."""
    follow: bool
    plot: Path | None
    """Where the PNG goes; None: into the run's directory."""
    wait_s: float
    """How long each waiting step may take before the demo gives up and says why."""


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured; printed, and what its test checks."""

    version: int
    items: int
    cold: int
    seen: int
    """Items that occurred in a transition: the items the job has seen."""
    covered: int
    """Of those, items with a vector in the current version."""
    sent: int
    send_seconds: float
    drain_seconds: float
    """From the first event sent until the job had consumed every one."""
    freshness_s: list[float]
    """Per item: first transition sent to Kafka -> first vector in Redis."""
    steady_freshness_s: list[float]
    """The same, for items whose first transition was sent after the first version."""
    model_lag_s: list[float]
    """Per version: publish time minus when the newest event it was trained on was sent."""
    purity: float | None
    """Mean share of an item's 10 nearest neighbours in its planted community."""
    chance: float | None
    plot: Path


def run_demo(
    config: Path | None, assignments: list[str], options: DemoOptions, report: Report = print
) -> DemoResult:
    base = load_settings(config, parse_assignments(assignments))
    demo_home = base.runtime.home / "demo"
    for old in sorted(demo_home.glob("run-*")):
        shutil.rmtree(old, ignore_errors=True)
    run = time.strftime("%Y%m%d-%H%M%S")
    run_dir = demo_home / f"run-{run}"
    run_dir.mkdir(parents=True)
    flags = [*_TUNING, *assignments, *_namespace(base, run, run_dir)]
    settings = load_settings(config, parse_assignments(flags))
    ratings = options.ratings or _synthetic(demo_home, options.synthetic, report)
    fmt: Format = options.format if options.ratings else "csv"
    columns, load_report = load_events(ratings, fmt, settings.events)

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_say_when_interrupted, report)
        stack = LocalStack(settings)
        kept_running = stack.answering()
        if not kept_running:
            report("demo: starting Kafka and Redis (stopped again when the demo ends)")
            cleanup.callback(stack.down, report)
            stack.up(report)
        _reset(settings, report)
        children = _Children(run_dir, report)
        cleanup.callback(children.stop)
        cli = [
            sys.executable,
            "-m",
            "streaming.cli",
            *(["--config", str(config)] if config else []),
        ]
        cli += [part for flag in flags for part in ("--set", flag)]
        children.start("job", [*cli, "job", "--from", "earliest"])
        children.start("trainer", [*cli, "trainer"])
        _wait_for_job(settings, children, options.wait_s, report)

        report(f"demo: streaming {load_report.summary()}")
        observer = _Observer(settings, children)
        cleanup.callback(observer.close)
        sent, send_seconds = _stream(
            settings, ordered_events(columns), options.rate, observer, report
        )
        drain_seconds = observer.wait_until_covered(options.wait_s, report)
        embeddings = observer.embeddings()
        communities = _communities(ratings)
        result = _result(
            observer,
            embeddings,
            (sent, send_seconds, drain_seconds),
            communities,
            options.plot or run_dir / "demo.png",
        )
        popular = _popular(columns, communities)
        _show(result, embeddings, popular, item_labels(ratings), report)
        draw(
            result.plot,
            embeddings,
            item_groups(ratings),
            list(observer.timeline),  # a snapshot: the observer keeps appending meanwhile
            f"walkstream demo: {sent:,} events streamed, version {result.version}",
        )
        report(f"demo: picture of the embeddings and the timeline -> {result.plot}")
        if kept_running:
            report(
                f"demo: explore: walkstream --set redis.key_prefix={settings.redis.key_prefix} "
                f"similar {popular[0]} --labels {ratings}"
            )
        if options.follow:
            _follow(settings, columns, options.rate, observer, report)
    report("demo: stopped everything it started")
    return result


def _say_when_interrupted(report: Report) -> None:
    if isinstance(sys.exception(), KeyboardInterrupt):
        report("demo: interrupted; stopped the job, the trainer and the services it started")


def _namespace(settings: Settings, run: str, run_dir: Path) -> list[str]:
    """The demo's own topics, groups, key prefix and directories: nothing it does touches a
    real deployment's data, and each run starts from nothing."""
    topics = [
        f"kafka.topics.{name}={_TOPIC_PREFIX}{run}.{name}" for name in TopicSettings.model_fields
    ]
    return [
        *topics,
        f"redis.key_prefix={settings.redis.key_prefix}-demo",
        f"stream.group_id=walkstream-demo-{run}",
        f"trainer.group_id=walkstream-demo-trainer-{run}",
        f"trainer.state_dir={run_dir / 'trainer'}",
        f"flink.checkpoint_dir={run_dir / 'checkpoints'}",
    ]


def _synthetic(demo_home: Path, spec: SyntheticSpec, report: Report) -> Path:
    """Synthetic data for `spec`, generated once and reused by later runs."""
    directory = demo_home / f"synthetic-{spec.events}-{spec.items}-{spec.seed}"
    spec_path = directory / "spec.json"
    if not spec_path.is_file() or json.loads(spec_path.read_text()) != dataclasses.asdict(spec):
        report(
            f"demo: generating {spec.events:,} synthetic events by {spec.users:,} users on "
            f"{spec.items:,} items in {spec.communities} planted communities"
        )
        generate(directory, spec)
    return directory / "ratings.csv"


def _communities(ratings: Path) -> Communities | None:
    items = ratings.with_name("items.csv")
    return load_communities(items) if items.is_file() else None


def _reset(settings: Settings, report: Report) -> None:
    """Forget earlier demo runs: their Redis keys and their topics."""
    prefix = settings.redis.key_prefix
    dropped = drop_all(connect(settings.redis), prefix)
    admin = kafka_admin(settings.kafka)
    try:
        ours = set(TopicSettings.model_fields)
        current = {str(getattr(settings.kafka.topics, name)) for name in ours}
        stale = [
            topic
            for topic in admin.list_topics()
            if topic.startswith(_TOPIC_PREFIX) and topic not in current
        ]
        if stale:
            admin.delete_topics(stale)
    finally:
        admin.close()
    ensure_topics(settings.kafka, sorted(current))
    report(
        f"demo: fresh namespace: topics {_TOPIC_PREFIX}*, Redis prefix {prefix!r} "
        f"({dropped:,} old keys and {len(stale)} old topics removed)"
    )


class _Children:
    """The job and the trainer, each in its own process group so that stopping one stops
    everything it started (the job's JVM included)."""

    def __init__(self, run_dir: Path, report: Report) -> None:
        self._run_dir = run_dir
        self._report = report
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        log = self._run_dir / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._running[name] = (process, log)
        self._report(f"demo: started the {name} (pid {process.pid}, log {log})")

    def check(self) -> None:
        """Fail with the end of its log if a child has stopped."""
        for name, (process, log) in self._running.items():
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeServiceError(
                    f"the {name} stopped (exit code {process.returncode}); the end of {log}:\n"
                    f"{tail}"
                )

    def stop(self) -> None:
        for process, _ in self._running.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process, _ in self._running.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self._running.clear()


def _signal_group(process: subprocess.Popen[bytes], which: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, which)


def _wait_for_job(settings: Settings, children: _Children, wait_s: float, report: Report) -> None:
    """The job is running once it completed a checkpoint: every task is up by then."""
    began = time.monotonic()
    last_report = began
    while not any(settings.checkpoint_dir.glob("*/chk-*")):
        children.check()
        now = time.monotonic()
        if now - began > wait_s:
            raise RuntimeServiceError(
                f"the job did not complete a checkpoint within {wait_s:.0f}s; see its log in "
                f"{settings.checkpoint_dir.parent}"
            )
        if now - last_report >= 5:
            last_report = now
            report(f"  waiting for the job to run (Flink mini-cluster): {now - began:.0f}s")
        time.sleep(0.5)
    report(f"demo: the job runs (first checkpoint after {time.monotonic() - began:.1f}s)")


class _Observer:
    """Watches the system from outside, as a user would: what was sent, how far the job's
    consumer group got, and what Redis serves (polled by a thread four times a second)."""

    _PERIOD_S = 0.25

    def __init__(self, settings: Settings, children: _Children) -> None:
        kafka = settings.kafka
        self.settings = settings
        self._children = children
        self._client = EmbeddingClient.from_settings(settings.redis)
        self._admin = kafka_admin(kafka)
        self._ratings = topic_partitions(kafka, [kafka.topics.ratings])
        self._ends = KafkaConsumer(**kafka_python_config(kafka))
        self._sequences: dict[int, UserSequence] = {}
        self.lock = threading.Lock()
        self.began = time.monotonic()
        self.first_sent: dict[int, float] = {}
        """Items that occurred in a transition (what the job sees), and when first sent."""
        self.vector_at: dict[int, float] = {}
        """When each item first had a vector in Redis (in any version)."""
        self.serving: set[int] = set()
        """Items of the current version."""
        self._event_times: list[int] = []
        self._sent_at: list[float] = []
        """Wall-clock time at which the first event of each (increasing) event time was sent."""
        self.model_lag_s: dict[int, float] = {}
        """Per version: its publish time minus when the newest event it covers was sent."""
        self.version: int | None = None
        self.version_items = 0
        self.version_cold = 0
        self.first_version_at: float | None = None
        self.timeline: list[TimelinePoint] = []
        self._failure: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="demo-observer", daemon=True)
        self._thread.start()

    def on_event(self, event: Event) -> None:
        """Note when each item's first transition was sent (the order the job applies)."""
        if not self._event_times or event.event_time > self._event_times[-1]:
            self._event_times.append(event.event_time)
            self._sent_at.append(time.time())
        if event.rating < self.settings.events.high_rating:
            return
        sequence = self._sequences.setdefault(event.user_id, UserSequence())
        sequence.add(event.item_id, event.event_time)
        for transition in sequence.advance(event.event_time):
            now = time.monotonic()
            self.first_sent.setdefault(transition.src, now)
            self.first_sent.setdefault(transition.dst, now)

    def _watch(self) -> None:
        try:
            while not self._stopped.wait(self._PERIOD_S):
                self._tick()
        except Exception as exc:  # noqa: BLE001 - handed to the main thread by check()
            self._failure = exc

    def _tick(self) -> None:
        now = time.monotonic()
        with contextlib.suppress(StoreError):  # a version switched away mid-read: next tick
            view = self._client.current() if self._client.version is not None else None
            if view is not None:
                items, meta = view.items(), view.meta()
                lag = self._lag(view.version, meta)
                with self.lock:
                    if lag is not None:
                        self.model_lag_s[view.version] = lag
                    for item in items.difference(self.vector_at):
                        self.vector_at[item] = now
                    self.serving = items
                    if self.first_version_at is None:
                        self.first_version_at = now
                    self.version = view.version
                    self.version_items, self.version_cold = meta["count"], meta["cold_count"]
        with self.lock:
            fresh = self.freshness()
            seen = list(self.first_sent)
            covered = sum(1 for item in seen if item in self.serving)
            self.timeline.append(
                TimelinePoint(
                    seconds=now - self.began,
                    version=self.version,
                    items=self.version_items,
                    cold=self.version_cold,
                    coverage=covered / len(seen) if seen else None,
                    freshness_p50_s=float(np.percentile(fresh, 50)) if fresh else None,
                    freshness_p99_s=float(np.percentile(fresh, 99)) if fresh else None,
                    model_lag_s=self.model_lag_s.get(self.version or 0),
                )
            )

    def _lag(self, version: int, meta: dict[str, Any]) -> float | None:
        newest = meta["info"].get("newest_event_time")
        if version in self.model_lag_s or newest is None:
            return None
        index = bisect.bisect_right(self._event_times, int(newest)) - 1
        return float(meta["created_at"]) - self._sent_at[index] if index >= 0 else None

    def freshness(self, since: float | None = None) -> list[float]:
        return [
            at - self.first_sent[item]
            for item, at in self.vector_at.items()
            if item in self.first_sent and (since is None or self.first_sent[item] >= since)
        ]

    def check(self) -> None:
        self._children.check()
        if self._failure is not None:
            raise RuntimeServiceError(f"demo: watching Kafka and Redis failed: {self._failure}")

    def consumed(self) -> tuple[int, int]:
        """(events the job has committed as consumed, events in the ratings topic)."""
        group = self.settings.stream.group_id
        offsets = self._admin.list_group_offsets({group: None})[group]
        done = sum(offsets[tp].offset for tp in self._ratings if tp in offsets)
        end = self._ends.end_offsets(self._ratings)
        return done, sum(end.values())

    def status(self) -> str:
        with self.lock:
            seen = list(self.first_sent)
            covered = sum(1 for item in seen if item in self.serving)
            fresh = self.freshness()
            version = (
                f"version {self.version}: {self.version_items:,} items ({self.version_cold:,} cold)"
                if self.version is not None
                else "no version yet"
            )
            freshness = f", freshness p50 {np.percentile(fresh, 50):.1f}s" if fresh else ""
            return f"seen {len(seen):,} items, {covered:,} with a vector; {version}{freshness}"

    def wait_until_covered(self, wait_s: float, report: Report) -> float:
        """Wait until the job consumed every event and every item that occurred in a
        transition has a vector; return the seconds from the start of streaming until the job
        had consumed them all."""
        deadline = time.monotonic() + wait_s
        drained_at: float | None = None
        last_report = 0.0
        while True:
            self.check()
            done, total = self.consumed()
            now = time.monotonic()
            if drained_at is None and done >= total:
                drained_at = now
            with self.lock:
                covered = all(item in self.serving for item in list(self.first_sent))
            if drained_at is not None and covered:
                return drained_at - self.began
            if now > deadline:
                raise RuntimeServiceError(
                    f"gave up after waiting {wait_s:.0f}s: the job consumed {done:,} of "
                    f"{total:,} events; {self.status()}. The logs of the job and the trainer "
                    f"are in {self.settings.checkpoint_dir.parent}"
                )
            if now - last_report >= 3:
                last_report = now
                report(
                    f"  {now - self.began:5.0f}s  job consumed {done:,}/{total:,} events; "
                    f"{self.status()}"
                )
            time.sleep(0.5)

    def embeddings(self) -> Embeddings:
        return version_embeddings(self._client.current())

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._ends.close()
        self._admin.close()
        self._client.close()


def _stream(
    settings: Settings,
    events: Iterator[Event],
    rate: float | None,
    observer: _Observer,
    report: Report,
) -> tuple[int, float]:
    """Send `events`, printing progress every few seconds and each new version."""
    last = {"version": observer.version, "report": 0.0}

    def progress(sent: int, seconds: float) -> None:
        observer.check()
        now = time.monotonic()
        if observer.version != last["version"]:
            last["version"] = observer.version
            report(f"  version {observer.version} published")
        if now - (last["report"] or 0.0) >= 3:
            last["report"] = now
            report(
                f"  {now - observer.began:5.0f}s  sent {sent:,} ({sent / seconds:,.0f}/s); "
                f"{observer.status()}"
            )

    return produce_events(
        settings,
        events,
        settings.kafka.topics.ratings,
        Pacer(rate=rate),
        progress,
        observer.on_event,
    )


def _result(
    observer: _Observer,
    embeddings: Embeddings,
    streamed: tuple[int, float, float],
    communities: Communities | None,
    plot: Path,
) -> DemoResult:
    sent, send_seconds, drain_seconds = streamed
    purity = chance = None
    if communities:
        purity = community_precision(embeddings, communities, k=10)
        known = [communities[item] for item in embeddings.item_ids.tolist() if item in communities]
        sizes = np.bincount(known)
        # a random other item is in the same community with this probability
        chance = float((sizes * (sizes - 1)).sum() / max(len(known) * (len(known) - 1), 1))
    with observer.lock:
        seen = set(observer.first_sent)
        return DemoResult(
            version=observer.version or 0,
            items=len(embeddings),
            cold=int(embeddings.cold.sum()),
            seen=len(seen),
            covered=len(seen & set(embeddings.item_ids.tolist())),
            sent=sent,
            send_seconds=send_seconds,
            drain_seconds=drain_seconds,
            freshness_s=observer.freshness(),
            steady_freshness_s=observer.freshness(since=observer.first_version_at),
            model_lag_s=list(observer.model_lag_s.values()),
            purity=purity,
            chance=chance,
            plot=plot,
        )


def _popular(columns: EventColumns, communities: Communities | None) -> list[int]:
    """The most-rated items, one per community when communities are known."""
    counts = np.bincount(columns.item_id)
    chosen: list[int] = []
    groups: set[int] = set()
    for item in np.argsort(-counts, kind="stable").tolist():
        group = communities.get(item) if communities else None
        if group is not None and group in groups:
            continue
        if group is not None:
            groups.add(group)
        chosen.append(item)
        if len(chosen) == _SHOW_ITEMS:
            break
    return chosen


def _percentiles(values: list[float], what: str) -> str:
    if not values:
        return "none measured"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:.1f}s, p99 {p99:.1f}s over {len(values):,} {what}"


def _show(
    result: DemoResult,
    embeddings: Embeddings,
    shown_items: list[int],
    labels: dict[int, str],
    report: Report,
) -> None:
    coverage = result.covered / result.seen if result.seen else 0.0
    lines = [
        "",
        f"version {result.version} in Redis: {result.items:,} items ({result.cold:,} cold, i.e. "
        "neighbour averages of items the model has not trained yet)",
        f"  coverage   {result.covered:,} of the {result.seen:,} items the job has seen have a "
        f"vector ({100 * coverage:.1f}%)",
        f"  events     sent {result.sent:,} in {result.send_seconds:.1f}s "
        f"({result.sent / max(result.send_seconds, 1e-9):,.0f}/s); the job had consumed all of "
        f"them {result.drain_seconds:.1f}s after the first was sent "
        f"({result.sent / max(result.drain_seconds, 1e-9):,.0f}/s)",
        "  freshness  from an item's first transition sent to Kafka until it has a vector in "
        f"Redis: {_percentiles(result.freshness_s, 'items')}",
        f"             items first seen after the first version: "
        f"{_percentiles(result.steady_freshness_s, 'items')}",
        "  model lag  from sending the newest event a version was trained on until the version "
        f"was published: {_percentiles(result.model_lag_s, 'versions')}",
    ]
    if result.purity is not None and result.chance is not None:
        lines.append(
            f"  quality    {result.purity:.2f} of an item's 10 nearest neighbours are in its "
            f"planted community (chance: {result.chance:.2f})"
        )
    lines += ["", "nearest neighbours (cosine) of the most-rated items:"]
    lines.append(neighbour_table(embeddings, shown_items, labels, _SHOW_NEIGHBOURS))
    report("\n".join(lines) + "\n")


def _follow(
    settings: Settings,
    columns: EventColumns,
    rate: float | None,
    observer: _Observer,
    report: Report,
) -> None:
    """Stream the same events again and again, each pass later in event time, until Ctrl-C."""
    report("demo: --follow: streaming the events again, later in event time; Ctrl-C stops")
    span = int(columns.event_time.max() - columns.event_time.min()) + 1
    shift = span
    try:
        while True:
            events = (
                event._replace(event_time=event.event_time + shift)
                for event in ordered_events(columns)
            )
            _stream(settings, events, rate, observer, report)
            shift += span
    except KeyboardInterrupt:
        report("demo: Ctrl-C: stopping the job, the trainer and the services the demo started")
