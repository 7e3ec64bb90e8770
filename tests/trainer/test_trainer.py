"""The trainer against real Kafka and Redis: versions, cold items, restarts, lost Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient

from streaming.config import Settings
from streaming.embeddings.graph import transition_graph
from streaming.embeddings.smoothing import smooth
from streaming.store import EmbeddingClient, connect
from streaming.store.versions import VersionKeys
from streaming.trainer import Trainer
from streaming.trainer.checkpoints import CheckpointStore
from streaming.trainer.corpus import Corpus, UserTransition
from streaming.trainer.cycles import chain
from streaming.trainer.model import with_cold_items
from tests.conftest import poll
from tests.ports import free_port
from tests.trainer.trainers import (
    COMMUNITIES,
    SIZE,
    community,
    community_users,
    community_walks,
    running,
    trainer_world,
)

pytestmark = pytest.mark.integration

OLD = list(range(COMMUNITIES * SIZE))


def _precision(client: EmbeddingClient, items: list[int], k: int = 10) -> float:
    view = client.current()
    hits = [
        community(other) == community(item) for item in items for other, _ in view.similar(item, k)
    ]
    return float(np.mean(hits))


def _sightings(items: list[int]) -> dict[int, dict[int, int]]:
    """Each item's neighbours on the items topic: its community mates."""
    return {
        item: {mate: 1 for mate in OLD if community(mate) == community(item) and mate != item}
        for item in items
    }


def test_incremental_cycles_keep_old_items_stable_and_train_new_ones(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(local_stack, unique, tmp_path, **{"trainer.min_new_samples": 4_000})
    rng = np.random.default_rng(7)
    world.send_sightings(_sightings(OLD))
    world.send_samples(community_walks(rng, OLD, 4_000))
    lines: list[str] = []
    Trainer(world.settings, report=lines.append).run(cycles=1)
    client = EmbeddingClient.from_settings(world.settings.redis)
    first = client.current()
    assert first.meta()["count"] == len(OLD)
    assert first.meta()["info"]["kind"] == "full"
    assert first.meta()["info"]["walks"] == world.settings.walks.model_dump()  # how it was made
    assert _precision(client, OLD[::5]) > 0.9  # chance: 24/199

    new = list(range(1_000, 1_016))
    mixed = community_walks(rng, [*OLD, *new, *new, *new], 2_000)
    world.send_samples(mixed)
    settings = world.settings.model_copy(
        update={"trainer": world.settings.trainer.model_copy(update={"min_new_samples": 2_000})}
    )
    Trainer(settings, report=lines.append).run(cycles=1)  # resumes from the checkpoint
    second = client.current()
    assert second.version > first.version
    assert second.meta()["info"]["kind"] == "incremental"
    assert second.cold(new) == set()  # trained, not averaged
    assert _precision(client, new) > 0.8

    before = {item: [o for o, _ in first.similar(item, 10)] for item in OLD[::4]}
    after = {item: [o for o, _ in second.similar(item, 10) if o < 1_000] for item in OLD[::4]}
    overlap = np.mean([len(set(before[i]) & set(after[i])) / 10 for i in before])
    assert overlap > world.settings.trainer.min_overlap
    assert any("cycle 2 (incremental)" in line for line in lines), lines


def test_cold_items_appear_within_seconds_and_a_lost_redis_is_refilled(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    port = free_port()
    world = trainer_world(
        local_stack,
        unique,
        tmp_path,
        **{"trainer.min_new_samples": 3_000, "trainer.metrics_port": port},
    )
    rng = np.random.default_rng(8)
    world.send_sightings(_sightings(OLD))
    world.send_samples(community_walks(rng, OLD, 3_000))
    trainer = Trainer(world.settings, report=lambda _: None)
    client = EmbeddingClient.from_settings(world.settings.redis)
    with running(trainer):
        poll(lambda: client.version, 60, "a first version")
        version = client.current()
        vectors = version.vectors([1, 2])

        sent = time.monotonic()
        world.send_sightings({5_000: {1: 3, 2: 1}, 5_001: {77_777: 1}})
        cold = poll(lambda: client.vectors([5_000]), 10, "the cold item's vector")[5_000]
        waited = time.monotonic() - sent
        np.testing.assert_allclose(cold, (3 * vectors[1] + vectors[2]) / 4, rtol=1e-5)
        assert client.current().cold([5_000, 1]) == {5_000}
        assert client.current().version == version.version  # added to it, no new version
        assert client.vector(5_001) is None  # no neighbour with a vector: no noise either
        assert waited < 10
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            metrics = page.read().decode()
        assert f"walkstream_trainer_version {float(version.version)}" in metrics
        assert "walkstream_trainer_cold_published_total 1.0" in metrics

        # Redis loses everything of ours (as a restart without persistence would)
        redis_client = connect(world.settings.redis)
        redis_client.delete(*redis_client.keys(f"{unique}:*"))
        assert client.version is None
        republished = poll(lambda: client.version, 10, "the republished version")
        assert republished > version.version  # numbers never repeat with other vectors
        assert client.vectors([1, 2]).keys() == {1, 2}


def test_when_the_stream_goes_quiet_a_full_retrain_of_the_window_is_served(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(
        local_stack,
        unique,
        tmp_path,
        **{"trainer.min_new_samples": 3_000, "trainer.settle_s": 2, "walks.n_walks": 2_000},
    )
    rng = np.random.default_rng(10)
    world.send_samples(community_walks(rng, OLD, 3_000))
    lines: list[str] = []
    trainer = Trainer(world.settings, report=lines.append)
    client = EmbeddingClient.from_settings(world.settings.redis)
    with running(trainer):
        first = poll(lambda: client.version, 60, "a first version")
        # Fewer than min_new_samples, and the interval (600 s) is far: only settling retrains.
        users = community_users(rng, OLD, 150)
        world.send_transitions(users)
        world.send_samples(community_walks(rng, OLD, 200))

        def settled() -> dict[str, Any] | None:
            if client.version == first:
                return None
            info: dict[str, Any] = client.current().meta()["info"]
            return info if info["samples"]["to"] == 3_200 + len(users) else None

        info = poll(settled, 120, "a full retrain of the whole corpus", lambda: lines)
        assert info["kind"] == "full"
        assert not any("(incremental)" in line for line in lines), lines
        assert sum("no new samples: a full retrain" in line for line in lines) == 1
        assert _precision(client, OLD[::5]) > 0.9
    # Settled: a restart with nothing new retrains nothing.
    again: list[str] = []
    Trainer(world.settings, report=again.append).run(stop=_after(5.0))
    assert not any("training on" in line for line in again), again


def _after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def _committed(settings: Settings) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        group = settings.trainer.group_id
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    topic = settings.kafka.topics.samples
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


def test_kill_9_loses_no_sample_and_counts_none_twice(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(local_stack, unique, tmp_path, **{"trainer.min_new_samples": 5_000})
    rng = np.random.default_rng(9)
    world.send_sightings(_sightings(OLD))
    walks = community_walks(rng, OLD, 60_000)
    world.send_samples(walks[:20_000])
    command = [sys.executable, "-m", "streaming.cli", *world.flags, "trainer"]
    log_path = tmp_path / "trainer.log"
    client = EmbeddingClient.from_settings(world.settings.redis)
    keys = VersionKeys(unique)
    redis_client = connect(world.settings.redis)

    def training(cycle: int) -> bool | None:
        return f"cycle {cycle} (" in log_path.read_text() or None

    log = log_path.open("ab")
    # kill 1: in the middle of cycle 2's training; kill 2: at an arbitrary moment
    for chunk, kill_when in [(1, lambda: poll(lambda: training(2), 120, "cycle 2")), (2, None)]:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        world.send_samples(walks[20_000 * chunk : 20_000 * (chunk + 1)])
        if kill_when is not None:
            kill_when()
        else:
            time.sleep(float(rng.uniform(2, 5)))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        version = client.version
        if version is not None:  # the last good version is whole and readable
            assert redis_client.hlen(keys.vectors(version)) == client.current().meta()["count"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    poll(lambda: log_path.read_text().count(" -> redis://") == 3 or None, 60, "the third start")
    poll(lambda: _committed(world.settings) == len(walks) or None, 120, "every sample")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    log.close()
    corpus = Corpus(world.settings.trainer_dir / "corpus", 10**9, 10**9)
    stored = sorted(tuple(map(int, tokens)) for _, tokens in corpus.samples())
    assert stored == sorted(tuple(walk) for walk in walks)
    assert client.version is not None


def test_with_smoothing_the_trainer_publishes_its_vectors_smoothed_over_the_windows_graph(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = trainer_world(
        local_stack,
        unique,
        tmp_path,
        **{"trainer.min_new_samples": 1_000, "training.smoothing": 0.5, "walks.n_walks": 500},
    )
    rng = np.random.default_rng(11)
    world.send_transitions(community_users(rng, OLD, 150))
    world.send_samples(community_walks(rng, OLD, 1_000))
    cold = {5_000: {OLD[0]: 2, OLD[10]: 1}, 5_001: {OLD[3]: 1}}  # announced, never trained
    world.send_sightings(cold)
    Trainer(world.settings).run(cycles=1)
    client = EmbeddingClient.from_settings(world.settings.redis)
    ids, published = client.current().all_vectors()
    latest = CheckpointStore(world.settings.trainer_dir / "checkpoints").latest()
    assert latest is not None
    _, model, _ = latest  # the model the next cycle continues: unsmoothed
    corpus = Corpus(world.settings.trainer_dir / "corpus", 10**6, 10**6)
    transitions = [s for _, s in corpus.samples() if isinstance(s, UserTransition)]
    assert transitions  # the first version holds nothing out: the graph is all of them
    unsmoothed, _ = with_cold_items(model, corpus.neighbours)
    expected = smooth(unsmoothed, transition_graph(chain(transitions)), 0.5).as_dict()
    assert sorted(ids) == sorted(expected)
    assert client.current().cold(cold) == set(cold) == set(cold) & set(ids)
    np.testing.assert_allclose(np.linalg.norm(published, axis=1), 1.0, rtol=1e-5)
    for item, vector in zip(ids, published, strict=True):
        np.testing.assert_allclose(vector, expected[item], rtol=1e-5, atol=1e-6)
    raw = unsmoothed.as_dict()[OLD[0]]
    assert not np.allclose(raw / np.linalg.norm(raw), expected[OLD[0]], atol=1e-3)
