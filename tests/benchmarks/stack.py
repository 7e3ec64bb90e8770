"""A benchmark's own services: settings for Kafka and Redis on free ports in a scratch home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, load_settings, parse_assignments
from streaming.producer import produce_file
from streaming.runtime import LocalStack
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


@dataclass
class LiveSystem:
    """A scratch home's Kafka and Redis, and `walkstream` commands run against them."""

    settings: Settings
    assignments: list[str]
    logs: Path
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`walkstream ARGS` with this system's settings, its output in `logs/NAME.log`."""
        flags = [part for a in self.assignments for part in ("--set", a)]
        out = (self.logs / f"{name}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, "-m", "streaming.cli", *flags, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text() if path.exists() else ""


@contextmanager
def live_system(tmp: Path, *extra: str) -> Iterator[LiveSystem]:
    """Services started in `tmp`; on exit every command is stopped (SIGTERM, then SIGKILL
    after 30 s) and the services go down."""
    settings, assignments = private_settings(tmp / "home", *extra)
    stack = LocalStack(settings)
    stack.up(report=lambda _: None)
    system = LiveSystem(settings, assignments, tmp)
    try:
        yield system
    finally:
        for child in system.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        stack.down(report=lambda _: None)
