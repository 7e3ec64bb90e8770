"""A benchmark's own services: settings for Kafka and Redis on free ports in a scratch home."""

from __future__ import annotations

from pathlib import Path

from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, load_settings, parse_assignments
from streaming.producer import produce_file
from tests.ports import free_port


def private_settings(home: Path, *extra: str) -> tuple[Settings, list[str]]:
    """Settings (and the same as `--set` assignments) that use the installed jars and Redis."""
    installed = load_settings()
    assignments = [
        f"runtime.home={home}",
        f"runtime.jars_dir={installed.runtime.jars_dir}",
        f"runtime.redis_server={installed.runtime.redis_server}",
        f"kafka.bootstrap_servers=127.0.0.1:{free_port()}",
        f"runtime.kafka_controller_port={free_port()}",
        f"redis.url=redis://127.0.0.1:{free_port()}/0",
        *extra,
    ]
    return load_settings(overrides=parse_assignments(assignments)), assignments


def synthetic_topic(
    settings: Settings, tmp: Path, topic: str, events: int, items: int, communities: int, seed: int
) -> Path:
    """Generate a synthetic ratings file (50 events per user) under `tmp` and produce it to
    `topic`: the input the job benchmarks replay. Returns the file."""
    spec = SyntheticSpec(
        users=events // 50, items=items, communities=communities, events=events, seed=seed
    )
    data = generate(tmp / "data", spec)
    print(f"producing {events:,} events to {topic} ...", flush=True)
    produce_file(settings, data.ratings_path, "csv", topic=topic, report=lambda _: None)
    return data.ratings_path
