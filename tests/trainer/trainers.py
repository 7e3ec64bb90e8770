"""Helpers for trainer tests: a test's own topics, key prefix and state, and samples with
planted communities."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from streaming.config import Settings, load_settings, parse_assignments
from streaming.records import UserItems, transition_sample, user_items, walk_sample
from streaming.topics import ensure_topics
from streaming.trainer import Trainer
from streaming.trainer.corpus import UserTransition
from tests.kafka_records import send_raw

COMMUNITIES, SIZE = 8, 25


def community(item: int) -> int:
    return item % COMMUNITIES


def community_walks(
    rng: np.random.Generator, items: list[int], n: int, length: int = 8
) -> list[list[int]]:
    """Walks that stay inside one community (item % COMMUNITIES) of `items`."""
    by_community: dict[int, list[int]] = {}
    for item in items:
        by_community.setdefault(community(item), []).append(item)
    groups = list(by_community.values())
    walks = []
    for _ in range(n):
        group = groups[rng.integers(len(groups))]
        walks.append([int(x) for x in rng.choice(group, size=length)])
    return walks


def community_users(
    rng: np.random.Generator, items: list[int], users: int, length: int = 12
) -> list[UserTransition]:
    """The transitions of `users` users, each rating `length` items of one community in turn:
    consecutive ones in the community's order, from a random start, so what follows an item
    is predictable (a held-out transition is one that other users make too)."""
    by_community: dict[int, list[int]] = {}
    for item in items:
        by_community.setdefault(community(item), []).append(item)
    groups = list(by_community.values())
    transitions = []
    for user in range(users):
        group = groups[rng.integers(len(groups))]
        start = int(rng.integers(len(group)))
        rated = [group[(start + k) % len(group)] for k in range(min(length, len(group)))]
        transitions += [
            UserTransition(user, 1_000 + k, a, b) for k, (a, b) in enumerate(pairwise(rated))
        ]
    return transitions


@dataclass
class TrainerWorld:
    settings: Settings
    flags: list[str]

    def send_samples(self, walks: list[list[int]]) -> None:
        records = [(None, walk_sample(tuple(w), 1).encode()) for w in walks]
        send_raw(self.settings, self.settings.kafka.topics.samples, records)

    def send_transitions(self, transitions: list[UserTransition]) -> None:
        records = [
            (str(t.user).encode(), transition_sample(t.user, t.src, t.dst, t.event_time).encode())
            for t in transitions
        ]
        send_raw(self.settings, self.settings.kafka.topics.samples, records)

    def send_users(self, records: list[UserItems]) -> None:
        """Users records as the job writes them (keyed by user)."""
        sent = [(str(r.user).encode(), user_items(*r).encode()) for r in records]
        send_raw(self.settings, self.settings.kafka.topics.users, sent)

    def send_sightings(self, sightings: dict[int, dict[int, int]]) -> None:
        records = [
            (
                str(item).encode(),
                json.dumps({"item_id": item, "first": True, "neighbours": counts}).encode(),
            )
            for item, counts in sightings.items()
        ]
        send_raw(self.settings, self.settings.kafka.topics.items, records)


def trainer_world(base: Settings, unique: str, tmp: Path, **overrides: object) -> TrainerWorld:
    values: dict[str, object] = {
        "kafka.bootstrap_servers": base.kafka.bootstrap_servers,
        "kafka.topics.samples": f"{unique}.samples",
        "kafka.topics.items": f"{unique}.items",
        "kafka.topics.users": f"{unique}.users",
        "redis.url": base.redis.url,
        "redis.password_file": base.redis.password_file,
        "redis.key_prefix": unique,
        "training.vector_size": 16,
        "training.window": 5,
        "training.epochs": 5,
        "training.workers": 2,
        "trainer.state_dir": tmp / "trainer",
        "trainer.group_id": unique,
        "trainer.interval_s": 600,  # cycles start by sample count, never by the clock
        "trainer.metrics_port": 0,
        "trainer.preload_s": 0,  # no reader preloads here
        **overrides,
    }
    flags = [part for key, value in values.items() for part in ("--set", f"{key}={value}")]
    settings = load_settings(overrides=parse_assignments(flags[1::2]))
    topics = settings.kafka.topics
    ensure_topics(settings.kafka, [topics.samples, topics.items, topics.users])
    return TrainerWorld(settings, flags)


@contextmanager
def running(trainer: Trainer) -> Iterator[None]:
    """`trainer` running in a thread for the block, then stopped (and waited for)."""
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, kwargs={"stop": stop})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
