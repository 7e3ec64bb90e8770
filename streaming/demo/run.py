"""`run_demo`: a fresh namespace, the services, the job and the trainer, the stream of events,
and the report, in that order; everything it started is stopped when it ends."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, TopicSettings, load_settings, parse_assignments
from streaming.demo.children import Children, wait_for_job
from streaming.demo.observer import Observer
from streaming.demo.results import (
    DemoResult,
    demo_result,
    popular_items,
    settled_user,
    show_result,
    show_user,
)
from streaming.demo.send import follow, stream_events
from streaming.embeddings.labels import Communities, item_groups, item_labels, load_communities
from streaming.kafka_clients import kafka_admin
from streaming.plot import draw
from streaming.producer import ordered_events
from streaming.rating_files import Format, load_events
from streaming.report import Report
from streaming.runtime import LocalStack
from streaming.store.connection import connect
from streaming.store.versions import drop_all
from streaming.topics import ensure_topics

__all__ = ["DemoOptions", "run_demo"]


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
        children = Children(run_dir, report)
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
        wait_for_job(settings, children, options.wait_s, report)

        report(f"demo: streaming {load_report.summary()}")
        observer = Observer(settings, children)
        cleanup.callback(observer.close)
        sent, send_seconds = stream_events(
            settings, ordered_events(columns), options.rate, observer, report
        )
        drain_seconds = observer.wait_until_covered(options.wait_s, report)
        embeddings = observer.embeddings()
        communities = _communities(ratings)
        result = demo_result(
            observer,
            embeddings,
            (sent, send_seconds, drain_seconds),
            communities,
            options.plot or run_dir / "demo.png",
        )
        popular = popular_items(columns, communities)
        labels = item_labels(ratings)
        show_result(result, embeddings, popular, labels, report)
        user, recent = settled_user(
            columns,
            settings.events.high_rating,
            settings.users.recent_items,
            int(columns.event_time.max()) - settings.stream.out_of_orderness_s - 2,
        )
        show_user(observer.user_view(user, recent, options.wait_s), user, labels, report)
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
                f"similar {popular[0]} --labels {ratings}\n"
                f"demo: or: walkstream --set redis.key_prefix={settings.redis.key_prefix} "
                f"recommend {user} --labels {ratings}"
            )
        if options.follow:
            follow(settings, columns, options.rate, observer, report)
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
