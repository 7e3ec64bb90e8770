"""User vectors through the trainer, against real Kafka and Redis: each user's vector is the
recency-weighted average of their recent items' directions in the version it is stored in,
follows new users records within a poll, survives kill -9, and forgets idle users."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streaming.config import Settings
from streaming.embeddings.users import recency_weights
from streaming.records import UserItems
from streaming.store import EmbeddingClient
from streaming.store.client import VersionView
from streaming.trainer import Trainer
from tests.conftest import poll
from tests.trainer.trainers import (
    COMMUNITIES,
    SIZE,
    community,
    community_walks,
    running,
    trainer_world,
)

pytestmark = pytest.mark.integration

ITEMS = list(range(COMMUNITIES * SIZE))
DECAY = 0.5


def _expected(view: VersionView, items: list[int]) -> np.ndarray | None:
    """The user's vector as the version's own item vectors give it (their directions)."""
    vectors = view.vectors(items)
    weights = recency_weights(len(items), DECAY)
    known = [
        (w, vectors[i] / np.linalg.norm(vectors[i]))
        for w, i in zip(weights, items, strict=True)
        if i in vectors
    ]
    if not known:
        return None
    return np.asarray(sum(w * v for w, v in known) / sum(w for w, _ in known), dtype=np.float32)


def _matches(view: VersionView, user: int, items: list[int]) -> bool:
    expected, found = _expected(view, items), view.user_vector(user)
    if expected is None or found is None:
        return expected is None and found is None
    return bool(np.allclose(found, expected, rtol=1e-5, atol=1e-6))


def test_user_vectors_average_their_versions_items_and_follow_new_ratings(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(
        local_stack,
        unique,
        tmp_path,
        **{
            "trainer.min_new_samples": 3_000,
            "users.recent_items": 3,
            "users.recency_decay": DECAY,
            "users.idle_ttl_s": 500,
        },
    )
    rng = np.random.default_rng(21)
    world.send_samples(community_walks(rng, ITEMS, 3_000))
    world.send_users(
        [
            UserItems(1, 3, [0, 8, 16], 1_000),  # community 0
            UserItems(2, 1, [1], 1_000),
            UserItems(3, 1, [99_999], 1_000),  # an item no version has
        ]
    )
    client = EmbeddingClient.from_settings(world.settings.redis)
    with running(Trainer(world.settings, report=lambda _: None)):
        first = poll(lambda: client.version and client.current(), 60, "a first version")
        poll(lambda: first.user_vector(2) is not None or None, 10, "the users of version 1")
        assert _matches(first, 1, [0, 8, 16])
        one = first.vector(1)  # user 2's only known item: its direction
        np.testing.assert_allclose(first.user_vector(2), one / np.linalg.norm(one), rtol=1e-6)
        assert first.user_vector(3) is None  # no noise for a user the version cannot place
        assert first.user_items(1) == [0, 8, 16]
        recommended = first.recommend(1, k=10)
        assert len(recommended) == 10
        assert not {0, 8, 16} & {item for item, _ in recommended}
        assert sum(community(item) == 0 for item, _ in recommended) >= 8
        assert {item for item, _ in first.recommend(1, k=3, exclude_seen=False)} & {0, 8, 16}
        assert first.recommend(3) == []

        # a new kept rating of user 1 reaches its vector in the same version
        # and user 4 (idle: 810 s behind the newest) gets one until the next version
        world.send_users([UserItems(1, 4, [8, 16, 24], 1_010), UserItems(4, 2, [5, 13], 200)])
        poll(lambda: _matches(first, 1, [8, 16, 24]) or None, 10, "user 1's new vector")
        poll(lambda: _matches(first, 4, [5, 13]) or None, 10, "user 4's vector")
        assert client.version == first.version

        # the next version averages its own vectors; idle user 4 is left out of it
        world.send_samples(community_walks(rng, ITEMS, 3_000))
        second = poll(
            lambda: client.version != first.version and client.current(), 120, "version 2"
        )
        assert _matches(second, 1, [8, 16, 24])
        assert _matches(second, 2, [1])
        assert second.user_vector(4) is None
        meta = second.meta()
        assert meta["users"] == 2
        assert meta["users_info"]["recent_items"] == 3
        assert meta["users_info"]["forgotten"] == 1
        assert meta["users_info"]["without_vector"] == 1
        # the old version keeps its own (during its grace period): never a mix
        assert _matches(first, 1, [8, 16, 24])
        assert not np.allclose(first.user_vector(1), second.user_vector(1))


def test_a_trainer_killed_mid_way_loses_no_user_update(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(
        local_stack,
        unique,
        tmp_path,
        **{"trainer.min_new_samples": 3_000, "users.recent_items": 4, "users.recency_decay": DECAY},
    )
    rng = np.random.default_rng(22)
    world.send_samples(community_walks(rng, ITEMS, 3_000))
    command = [sys.executable, "-m", "streaming.cli", *world.flags, "trainer"]
    log_path = tmp_path / "trainer.log"
    client = EmbeddingClient.from_settings(world.settings.redis)
    final: dict[int, UserItems] = {}

    def round_of(n: int, users: range) -> list[UserItems]:
        records = []
        for user in users:
            previous = final.get(user)
            kept = (previous.kept if previous else 0) + 1
            items = [*(previous.items if previous else []), int(rng.integers(len(ITEMS)))][-4:]
            record = UserItems(user, kept, items, 1_000 + n)
            final[user] = record
            records.append(record)
        return records

    def applied(view: VersionView, users: range) -> bool | None:
        return all(_matches(view, u, final[u].items) for u in users) or None

    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        first = poll(lambda: client.version and client.current(), 60, "a first version")
        # kill 1 right after round 0 (every user) is sent; kill 2 once round 1 (users 0-299)
        # is in Redis, most likely before the state is saved again; round 2 (300-449) after
        for n, users, wait in [(0, range(600), False), (1, range(300), True)]:
            world.send_users(round_of(n, users))
            if wait:
                poll(lambda users=users: applied(first, users), 30, f"round {n}")
            process.send_signal(signal.SIGKILL)
            process.wait()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        world.send_users(round_of(2, range(300, 450)))
        try:
            poll(lambda: applied(first, range(600)), 60, "every user's final vector")
            # a new version averages every user from the trainer's own state: it must hold
            # every round, the ones it read again after each kill included
            world.send_samples(community_walks(rng, ITEMS, 3_000))
            second = poll(
                lambda: client.version != first.version and client.current(), 120, "version 2"
            )
            assert applied(second, range(600))
        finally:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout=60)
    assert first.version != second.version
    assert second.meta()["users"] == 600
