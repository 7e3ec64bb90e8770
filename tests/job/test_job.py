"""The streaming job against real Kafka and Flink: the batch pipeline is the oracle."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from scipy.stats import chi2, chisquare

from streaming.config import Settings, load_settings, parse_assignments
from streaming.core.events import Event
from streaming.embeddings.graph import transition_graph, user_sequences
from streaming.embeddings.users import recent_items
from streaming.job.pipeline import walk_task_count
from streaming.kafka_clients import kafka_python_config
from streaming.producer import produce_file
from streaming.rating_files import load_events
from streaming.records import (
    ITEM_STAGE,
    UserItems,
    event_to_json,
    read_count_update,
    read_late_event,
    read_sample,
    read_user_items,
    walk_task_holder,
)
from streaming.trainer.corpus import UserTransition
from streaming.trainer.cycles import chain
from tests.conftest import poll
from tests.job.jobs import (
    NO_IDLE_PARTITIONS,
    JobWorld,
    a_user_per_partition,
    batch_counts,
    final_counts,
    job_world,
    synthetic,
)
from tests.kafka_records import read_topic, send_events, send_raw

pytestmark = pytest.mark.integration


def _oracle(events: list[Event], high_rating: float = 3.5) -> dict[tuple[int, int], int]:
    columns = [np.array(column) for column in zip(*events, strict=True)]
    return transition_graph(user_sequences(*columns, high_rating)).to_dict()


def _walks(world: JobWorld) -> list[dict[str, Any]]:
    """The walk samples the job wrote (the samples topic also has its transitions)."""
    samples = [json.loads(v) for *_, v in read_topic(world.settings, world.topic("samples"))]
    return [sample for sample in samples if sample["kind"] == "walk"]


def _events_of(records: list[tuple[int, int, int, bytes | None, bytes]]) -> list[Event]:
    return [Event(**json.loads(value)) for *_, value in records]


@pytest.mark.parametrize("state_backend", ["hashmap", "rocksdb"])
def test_replay_gives_exactly_the_batch_counts(
    local_stack: Settings, unique: str, tmp_path: Path, state_backend: str
) -> None:
    world = job_world(local_stack, unique, tmp_path, **{"flink.state_backend": state_backend})
    ratings = synthetic(tmp_path, 20_000, seed=1)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    began_ms = time.time() * 1000
    world.run("--from", "earliest", "--until", "latest")

    expected = batch_counts(ratings, world.settings)
    assert final_counts(world.settings) == expected
    assert sum(expected.values()) > 5_000
    items = read_topic(world.settings, world.topic("items"))
    announced: dict[int, dict[int, int]] = {}  # merged as the trainer merges them
    firsts: Counter[int] = Counter()
    for *_, value in items:
        record = json.loads(value)
        announced.setdefault(record["item_id"], {}).update(
            {int(n): c for n, c in record["neighbours"].items()}
        )
        firsts[record["item_id"]] += record["first"]
    sightings: dict[int, Counter[int]] = {}  # once per direction of an edge
    for src, dst in expected:
        sightings.setdefault(src, Counter())[dst] += 1
        sightings.setdefault(dst, Counter())[src] += 1
    assert announced.keys() == sightings.keys()
    assert firsts == Counter(announced.keys())
    limit = world.settings.stream.item_neighbours
    for item, known in announced.items():  # its first `limit` neighbours, either direction
        assert len(known) == min(limit, len(sightings[item])), item
        # how often each was seen; once an item knows `limit`, it announces no more
        exact = len(sightings[item]) < limit
        for n, count in known.items():
            assert count == sightings[item][n] if exact else 1 <= count <= sightings[item][n]
    # Stamped when written, not with the (years old) event time: time-based retention would
    # delete a replay's output within minutes (it did, in CI).
    counts = read_topic(world.settings, world.topic("counts"))
    assert min(timestamp for _, _, timestamp, *_ in items + counts) >= began_ms


def test_a_bounded_replay_writes_every_transition_and_each_users_recent_items_as_batch_has_them(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path, **{"users.recent_items": 5})
    ratings = synthetic(tmp_path, 20_000, seed=3)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    # after every rating of the file (an earlier one could be late: sent after them)
    last = load_events(ratings, "csv", world.settings.events)[0][3].max()
    loner = Event(10**9, 7, 5.0, int(last) + 60)  # one kept rating: no transition
    low = Event(10**9, 8, 1.0, int(last) + 61)  # not kept: changes none of the loner's items
    send_events(world.settings, world.topic("ratings"), [loner, low])
    world.run("--from", "earliest", "--until", "latest")

    columns, _ = load_events(ratings, "csv", world.settings.events)
    batch = user_sequences(*columns, 3.5)
    expected = Counter()
    for k, user in enumerate(batch.users.tolist()):
        items = batch.items_of(k).tolist()
        times = batch.times[batch.indptr[k] : batch.indptr[k + 1]].tolist()
        for (a, b), t in zip(pairwise(items), times[1:], strict=True):
            if a != b:
                expected[UserTransition(user, t, a, b)] += 1
    samples = [
        read_sample(value) for *_, value in read_topic(world.settings, world.topic("samples"))
    ]
    assert {s.kind for s in samples} == {"transition"}  # a bounded replay starts no walks
    written = Counter(
        UserTransition(s.user, s.newest_event_time, *s.items) for s in samples if s.user is not None
    )
    assert written == expected  # each transition once, with its user and event time
    assert sum(expected.values()) > 1_000
    chained = chain(written)
    # Each user's whole sequence, but an item rated twice in a row once (no transition).
    without_repeats = [
        [item for k, item in enumerate(row) if k == 0 or item != row[k - 1]]
        for row in batch.as_lists()
    ]
    assert chained.as_lists() == [row for row in without_repeats if len(row) > 1]

    # Each user's newest users record (the highest `kept`) holds the last 5 items of their
    # sequence, every user (one with a single item too); all of a user's records carry the
    # user as key, so they share a partition.
    newest: dict[int, UserItems] = {}
    partitions: dict[int, set[int]] = {}
    for partition, _, _, key, value in read_topic(world.settings, world.topic("users")):
        record = read_user_items(value)
        assert key == str(record.user).encode()
        partitions.setdefault(record.user, set()).add(partition)
        if record.user not in newest or record.kept > newest[record.user].kept:
            newest[record.user] = record
    assert all(len(found) == 1 for found in partitions.values())
    expected_recent = {
        user: UserItems(
            user, len(row), recent_items(row, 5), int(batch.times[batch.indptr[k + 1] - 1])
        )
        for k, (user, row) in enumerate(zip(batch.users.tolist(), without_repeats, strict=True))
    }
    expected_recent[loner.user_id] = UserItems(loner.user_id, 1, [7], loner.event_time)
    assert newest == expected_recent


def test_a_user_idle_past_the_ttl_is_forgotten_and_starts_a_new_sequence(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path, **{"users.idle_ttl_s": 100})
    t = 1_000_000
    events = [
        Event(1, 11, 5.0, t), Event(1, 12, 5.0, t + 10),  # then idle for 200 s: forgotten
        Event(1, 13, 5.0, t + 210), Event(1, 14, 5.0, t + 220),
        Event(2, 21, 5.0, t), Event(2, 22, 5.0, t + 60),  # gaps of 60 s: remembered
        Event(2, 23, 5.0, t + 120),
    ]  # fmt: skip
    send_events(world.settings, world.topic("ratings"), events)
    world.run("--from", "earliest", "--until", "latest")

    samples = [read_sample(v) for *_, v in read_topic(world.settings, world.topic("samples"))]
    transitions = {(s.user, *s.items, s.newest_event_time) for s in samples}
    assert transitions == {
        (1, 11, 12, t + 10), (1, 13, 14, t + 220),  # no 12 -> 13 across the gap
        (2, 21, 22, t + 60), (2, 22, 23, t + 120),
    }  # fmt: skip
    records = [read_user_items(v) for *_, v in read_topic(world.settings, world.topic("users"))]
    assert sorted({(r.user, r.event_time, r.kept, tuple(r.items)) for r in records}) == [
        (1, t, 1, (11,)), (1, t + 10, 2, (11, 12)),
        (1, t + 210, 1, (13,)), (1, t + 220, 2, (13, 14)),  # a new sequence: kept from 1
        (2, t, 1, (21,)), (2, t + 60, 2, (21, 22)), (2, t + 120, 3, (21, 22, 23)),
    ]  # fmt: skip


def _same_weights(
    streamed: dict[tuple[int, int], float], batch: dict[tuple[int, int], float]
) -> bool:
    """Equal edges, weights equal to floating-point rounding (decayed ones differ there)."""
    return streamed.keys() == batch.keys() and all(
        math.isclose(streamed[edge], weight, rel_tol=1e-9) for edge, weight in batch.items()
    )


# Thread mode: one walk task (the mini-cluster's default there), and two, restored into one;
# process mode: two.
@pytest.mark.parametrize(
    ("decay", "mode", "walk_tasks"),
    [(False, "thread", 0), (True, "thread", 2), (True, "process", 0)],
    ids=["counts", "decayed", "decayed-process-mode"],
)
def test_counts_stay_exact_when_the_job_is_killed_and_restored_with_a_changed_graph(
    local_stack: Settings, unique: str, tmp_path: Path, decay: bool, mode: str, walk_tasks: int
) -> None:
    ratings = synthetic(tmp_path, 150_000, seed=2)
    columns, _ = load_events(ratings, "csv", local_stack.events)
    # decayed: a half-life of a tenth of the events' span, so most weights are far from counts
    span = int(columns.event_time.max() - columns.event_time.min())
    half_life = span / 10 if decay else None
    world = job_world(
        local_stack,
        unique,
        tmp_path,
        **{"stream.transition_samples": "false", "users.enabled": "false"},
        **{"flink.python_execution_mode": mode, "stream.batch_ms": "200"},
        **{"stream.walk_tasks": walk_tasks},
        **({"walks.half_life_s": half_life} if decay else {}),
    )
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    oracle = transition_graph(user_sequences(*columns, 3.5), half_life)
    expected, as_of = oracle.to_dict(), oracle.as_of
    if decay:
        assert len({round(w, 6) for w in expected.values()}) > 1_000  # weights, not counts
    # One later event of a new user: no transition of its own, but it moves the watermark past
    # every real event, as live traffic would, so the restored job releases them all.
    sentinel = Event(10**9, 1, 5.0, int(columns.event_time.max()) + 10**6)
    send_events(world.settings, world.topic("ratings"), [sentinel])

    job = world.start("--from", "earliest")
    checkpoints = world.settings.checkpoint_dir
    try:
        poll(lambda: list(checkpoints.glob("*/chk-*/_metadata")), 180, "a completed checkpoint")
        assert final_counts(world.settings, as_of) != expected, "finished before the kill"
    finally:
        JobWorld.kill(job)
    # As after an upgrade that adds outputs, lengthens the item stage's batches and runs the
    # default number of walk tasks: the restored graph has more operators, and every piece of
    # state must still find its operator; the batches pending in the checkpoint are counted
    # once; each walk task restores a copy of the step tables.
    upgrade = [
        "stream.transition_samples=true", "users.enabled=true", "stream.batch_ms=500",
        "stream.walk_tasks=0",
    ]  # fmt: skip
    upgraded = world.with_settings(*upgrade)
    restored = upgraded.start("--from", "earliest", "--from-checkpoint", "latest")
    tasks = walk_task_count(upgraded.settings, in_mini_cluster=True)
    holders = [walk_task_holder(t) for t in range(tasks)]
    try:
        poll(
            lambda: all(
                _same_weights(final_counts(world.settings, as_of, holder), expected)
                for holder in [ITEM_STAGE, *holders]
            ),
            240,
            "the oracle's weights in the item stage and every walk task",
        )
    finally:
        JobWorld.kill(restored)
    final = final_counts(world.settings, as_of)
    if decay:  # a transition counted twice or lost moves its edge by >= 2^-10: far past 1e-9
        assert _same_weights(final, expected)
    else:
        assert final == expected
    # Every walk task's step tables are the item stage's, bit for bit.
    assert all(final_counts(world.settings, as_of, holder) == final for holder in holders)
    samples = read_topic(world.settings, world.topic("samples"))
    assert any(json.loads(value)["kind"] == "transition" for *_, value in samples)
    assert read_topic(world.settings, world.topic("users"))


def test_a_restored_bounded_replay_is_refused(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)
    result = subprocess.run(
        world.command("--until", "latest", "--from-checkpoint", "latest"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "FLINK-31006" in result.stderr


def test_a_restore_with_another_shard_count_is_refused(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)
    send_events(world.settings, world.topic("ratings"), [Event(1, 1, 5.0, 1), Event(1, 2, 5.0, 2)])
    job = world.start("--from", "earliest")
    try:
        poll(
            lambda: list(world.settings.checkpoint_dir.glob("*/chk-*/_metadata")),
            180,
            "a checkpoint",
        )
    finally:
        JobWorld.kill(job)
    resharded = world.with_settings("stream.item_shards=7")
    with pytest.raises(AssertionError, match="Cannot map checkpoint/savepoint state"):
        resharded.run("--from-checkpoint", "latest", timeout_s=120)


def _graphs(variants: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Each variant's job graph (its settings, "--until" for a bounded replay), built in a
    process of its own: {uid: parallelism} of its operators."""
    printed = subprocess.run(
        [sys.executable, "-m", "tests.job.graph_operators", json.dumps(variants)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    graphs: dict[str, dict[str, int]] = json.loads(printed.splitlines()[-1])
    return graphs


def test_the_mini_cluster_runs_one_walk_task_per_interpreter_unless_told(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """In thread mode the mini-cluster's tasks share one interpreter: at parallelism 2 it
    runs one walk task (a second would repeat the first's work in turns with it); in process
    mode one per task slot; `stream.walk_tasks` sets the number. Off the mini-cluster (under
    `flink run`, a TaskManager per interpreter) it is flink.parallelism."""
    world = job_world(local_stack, unique, tmp_path)  # flink.parallelism=2
    assignments = world.flags[1::2]
    variants = {
        "thread": assignments,
        "process": [*assignments, "flink.python_execution_mode=process"],
        "set": [*assignments, "stream.walk_tasks=3"],
    }
    graphs = _graphs(variants)
    for name, walk_tasks in {"thread": 1, "process": 2, "set": 3}.items():
        graph = graphs[name]
        assert {n for uid, n in graph.items() if uid.startswith("walk-tasks-")} == {walk_tasks}
        assert {n for uid, n in graph.items() if uid.startswith("items-v3-")} == {2}
        settings = load_settings(overrides=parse_assignments(variants[name]))
        assert walk_task_count(settings, in_mini_cluster=True) == walk_tasks
    assert walk_task_count(world.settings, in_mini_cluster=False) == 2


def test_the_ids_of_each_parts_operators_do_not_depend_on_the_other_parts(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """A checkpoint's state is found by operator id: the ids of the parts made after the
    walk feedback must not move when a setting changes it, or when a job has none."""
    world = job_world(
        local_stack,
        unique,
        tmp_path,
        **{"stream.transition_samples": "false", "users.enabled": "false"},
    )
    assignments = world.flags[1::2]
    variants = {
        "live": assignments,
        "routed": [*assignments, "stream.walk_stage=routed"],
        "batched": [*assignments, "stream.walk_stage=routed", "stream.hop_batch_ms=200"],
        "transitions": [*assignments, "stream.transition_samples=true"],
        "users": [*assignments, "users.enabled=true"],
        "bounded": [*assignments, "--until"],
        "decayed": [*assignments, "walks.half_life_s=3600"],
    }
    uids = {name: set(found) for name, found in _graphs(variants).items()}
    live, routed = uids["live"], uids["routed"]
    # Gained operators only, all of the part that changed: every live state still restores.
    assert routed < uids["batched"]
    assert all(u.startswith("hops-") for u in uids["batched"] - routed)
    assert live < uids["transitions"]
    assert all("transition" in u for u in uids["transitions"] - live)
    assert live < uids["users"]
    assert all("users" in u for u in uids["users"] - live)
    # The items' weights, and the walk tasks' step tables, are of one half-life: another one
    # must not restore them.
    (items,) = {u for u in live if u.startswith("items-v3-")}
    (tables,) = {u for u in live if u.startswith("walk-tasks-")}
    assert items.endswith("-shards-replicated")
    decayed = {
        items.replace("-replicated", "-half-life-3600.0s-replicated"),
        f"{tables}-half-life-3600.0s",
    }
    assert uids["decayed"] - live == decayed
    assert live - uids["decayed"] == {items, tables}
    # Routed walks leave the step tables out: a routed job's checkpoint must not restore the
    # items beside empty ones (nor a replicated one's items without them).
    assert items.removesuffix("-replicated") in routed
    assert items not in routed
    assert not any(u.startswith("walk-tasks-") for u in routed)
    assert any(u.startswith("hops-") for u in routed)
    stateful = ("ratings-", "order-", "sightings-")
    assert {u for u in uids["bounded"] if u.startswith(stateful)} == {
        u for u in live if u.startswith(stateful)
    }
    assert {u.split("-")[0] for u in live if u.startswith(stateful)} == {
        "ratings", "order", "sightings"
    }  # fmt: skip


def test_replay_from_offsets_and_from_a_timestamp(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)
    produce_file(world.settings, synthetic(tmp_path, 8_000, seed=3), "csv", report=lambda _: None)
    records = read_topic(world.settings, world.topic("ratings"))
    starts = {p: max(o for q, o, *_ in records if q == p) // 2 for p, *_ in records}
    world.run("--from", "offsets:" + ",".join(f"{p}:{o}" for p, o in sorted(starts.items())),
              "--until", "latest")  # fmt: skip
    tail = [r for r in records if r[1] >= starts[r[0]]]
    assert final_counts(world.settings) == _oracle(_events_of(tail))

    # the same from a Kafka timestamp, on a fresh counts topic
    later = job_world(local_stack, unique + "t", tmp_path / "t")
    send_raw(
        later.settings,
        later.topic("ratings"),
        [(k, v) for *_, k, v in sorted(records, key=lambda r: r[1])],
    )
    copied = read_topic(later.settings, later.topic("ratings"))
    stamps = sorted(r[2] for r in copied)
    middle = stamps[len(stamps) // 2]
    later.run("--from", f"timestamp:{middle}", "--until", "latest")
    first = {
        p: min((o for q, o, ts, *_ in copied if q == p and ts >= middle), default=None)
        for p, *_ in copied
    }
    chosen = [r for r in copied if first[r[0]] is not None and r[1] >= first[r[0]]]
    assert 0 < len(chosen) < len(copied)
    assert final_counts(later.settings) == _oracle(_events_of(chosen))


MALFORMED: dict[str, list[bytes]] = {
    "bad_json": [b'{"user_id": 1, "item_id":', b"not json at all"],
    "not_an_object": [b"[1, 2, 3]", b'"a string"'],
    "missing_field": [b'{"user_id": 1, "item_id": 2, "rating": 4.0}'],
    "wrong_type": [b'{"user_id": "1", "item_id": 2, "rating": 4.0, "event_time": 5}',
                   b'{"user_id": 1, "item_id": 2, "rating": "4", "event_time": 5}'],
    "bad_id": [b'{"user_id": 1, "item_id": -2, "rating": 4.0, "event_time": 5}'],
    "rating_not_finite": [b'{"user_id": 1, "item_id": 2, "rating": NaN, "event_time": 5}',
                          b'{"user_id": 1, "item_id": 2, "rating": Infinity, "event_time": 5}'],
    "rating_out_of_range": [b'{"user_id": 1, "item_id": 2, "rating": 7.5, "event_time": 5}'],
    "bad_event_time": [b'{"user_id": 1, "item_id": 2, "rating": 4.0, "event_time": 1700000000000}'],
    "oversized": [b'{"user_id": 1, "item_id": 2, "rating": 4.0, "event_time": 5, "pad": "'
                  + b"x" * 2000 + b'"}'],
    "bad_encoding": [b'{"user_id": 1, "item_id": 2, "rating": 4.0, "event_time": 5, "x": "\xff"}'],
    "key_mismatch": [b'{"user_id": 99, "item_id": 2, "rating": 4.0, "event_time": 5}'],
}  # fmt: skip


def test_bad_input_goes_to_the_dead_letter_topic(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)
    rng = np.random.default_rng(4)
    n = 5_000
    users, items = rng.integers(1, 300, n), rng.integers(1, 200, n)
    ratings, times = rng.choice([2.0, 4.0, 5.0], n), np.sort(rng.integers(1_000, 900_000, n))
    valid = [
        Event(int(u), int(i), float(r), int(t))
        for u, i, r, t in zip(users, items, ratings, times, strict=True)
    ]
    bad = [
        (reason, raws[k % len(raws)]) for reason, raws in MALFORMED.items() for k in range(1_000)
    ]
    sent = Counter(reason for reason, _ in bad)
    # valid events stay in event-time order; malformed ones land anywhere between them
    slots = np.sort(rng.integers(0, len(valid) + 1, len(bad)))
    order = rng.permutation(len(bad))
    stream: list[tuple[bytes | None, bytes]] = []
    next_bad = 0
    for index, event in enumerate([*valid, None]):
        while next_bad < len(bad) and slots[next_bad] == index:
            stream.append((b"1", bad[order[next_bad]][1]))
            next_bad += 1
        if event is not None:
            stream.append((str(event.user_id).encode(), json.dumps(event._asdict()).encode()))
    assert len(stream) == len(valid) + len(bad)
    assert min(sent.values()) == 1_000
    send_raw(world.settings, world.topic("ratings"), stream)
    world.run("--from", "earliest", "--until", "latest")

    dead = [json.loads(v) for *_, v in read_topic(world.settings, world.topic("dead_letter"))]
    assert Counter(record["reason"] for record in dead) == sent
    assert len({(record["partition"], record["offset"]) for record in dead}) == len(dead)
    assert all(record["value_base64"] for record in dead)
    assert final_counts(world.settings) == _oracle(valid)


def test_out_of_order_events_within_the_bound_give_the_same_counts(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    # An idle timeout far shorter than a busy machine's stalls: a bounded replay has no use
    # for it (a partition that ends stops holding the watermark back), and must not let a
    # stalled partition be passed by the others' watermark.
    world = job_world(
        local_stack, unique, tmp_path,
        **{"stream.out_of_orderness_s": 3600, "stream.idle_timeout_s": 1},
    )  # fmt: skip
    rng = np.random.default_rng(5)
    n = 6_000
    users, items, times = rng.integers(1, 100, n), rng.integers(1, 60, n), rng.integers(0, 10**6, n)
    events = [
        Event(int(u), int(i), 4.5, int(t)) for u, i, t in zip(users, items, times, strict=True)
    ]
    arrival = np.argsort([e.event_time + rng.uniform(0, 3500) for e in events], kind="stable")
    send_events(world.settings, world.topic("ratings"), [events[k] for k in arrival])
    world.run("--from", "earliest", "--until", "latest")
    assert final_counts(world.settings) == _oracle(events)
    assert read_topic(world.settings, world.topic("late")) == []


def test_ties_in_event_time_are_ordered_by_item_whatever_their_arrival(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """Several items rated by one user in one second (a batch of ratings) pair up in item
    order, as in the batch pipeline, not in the order they arrived in."""
    world = job_world(local_stack, unique, tmp_path)
    rng = np.random.default_rng(11)
    events = [
        Event(user, int(item), 4.5, 1_000 + second)
        for user in range(1, 41)
        for second in range(15)
        for item in rng.choice(50, size=3, replace=False)
    ]
    arrival = sorted(events, key=lambda e: (e.event_time, -e.item_id))  # ties in reverse
    # Odd users in the producer's compact form (ordered in the JVM alone), even ones not.
    send_raw(
        world.settings,
        world.topic("ratings"),
        [
            (
                str(e.user_id).encode(),
                event_to_json(e) if e.user_id % 2 else (json.dumps(e._asdict()).encode()),
            )
            for e in arrival
        ],
    )
    world.run("--from", "earliest", "--until", "latest")
    expected = _oracle(events)
    assert expected != _oracle_in_arrival_order(arrival)  # the ties matter here
    assert final_counts(world.settings) == expected


def _oracle_in_arrival_order(events: list[Event]) -> dict[tuple[int, int], int]:
    counts: Counter[tuple[int, int]] = Counter()
    last: dict[int, int] = {}
    for event in events:
        previous = last.get(event.user_id)
        if previous is not None and previous != event.item_id:
            counts[(previous, event.item_id)] += 1
        last[event.user_id] = event.item_id
    return dict(counts)


def test_events_behind_the_watermark_go_to_the_late_topic(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """Late in both paths: a compact record (judged in the JVM) and one in another JSON form
    (judged by the Python validator). Neither makes a transition; a late low rating is
    ignored like any low rating."""
    world = job_world(
        local_stack, unique, tmp_path, **NO_IDLE_PARTITIONS, **{"stream.walks_per_weight": 0}
    )
    partitions = world.settings.kafka.partitions
    later = a_user_per_partition(partitions, range(100, 200))
    on_time = [Event(1, 10, 5.0, 1_000), Event(1, 11, 5.0, 1_001)]
    # a later event in every partition moves the watermark past the first two
    send_events(world.settings, world.topic("ratings"), [
        *on_time, *(Event(u, 1, 5.0, 10**6) for u in later.values())])  # fmt: skip
    job = world.start("--from", "earliest")
    try:
        poll(lambda: final_counts(world.settings) == {(10, 11): 1}, 120, "the on-time transition")
        late = [Event(1, 12, 5.0, 1_002), Event(1, 13, 4.0, 1_003), Event(1, 14, 1.0, 1_004)]
        send_raw(world.settings, world.topic("ratings"), [
            (b"1", json.dumps(late[0]._asdict(), separators=(",", ":")).encode()),  # compact
            (b"1", json.dumps(late[1]._asdict()).encode()),  # ", " and ": ": the validator's
            (b"1", json.dumps(late[2]._asdict(), separators=(",", ":")).encode()),  # low
        ])  # fmt: skip
        poll(lambda: len(read_topic(world.settings, world.topic("late"))) >= 2, 120, "late events")
        # a later on-time event of the same user still follows its last on-time one
        newer = [Event(u, 1, 5.0, 3 * 10**6) for u in later.values()]
        send_events(world.settings, world.topic("ratings"), [Event(1, 15, 5.0, 2 * 10**6), *newer])
        poll(lambda: (11, 15) in final_counts(world.settings), 120, "the next transition")
        records = read_topic(world.settings, world.topic("late"))
    finally:
        JobWorld.kill(job)
    reported = sorted((json.loads(value) for *_, value in records), key=lambda r: r["item_id"])
    assert [Event(*(r[f] for f in Event._fields)) for r in reported] == late[:2]
    assert all(r["watermark"] >= 10**6 - 1 for r in reported)
    assert final_counts(world.settings) == {(10, 11): 1, (11, 15): 1}


def test_events_of_a_source_task_that_was_idle_are_late_not_lost(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """One source task reads the even partitions, the other the odd ones. The odd ones stay
    empty until the even ones have moved the watermark far ahead, so their task goes idle;
    its events then arrive behind the job's watermark, though not behind its own task's.
    They are late: each is in the late topic, none is dropped without a trace."""
    world = job_world(
        local_stack, unique, tmp_path,
        **{"stream.idle_timeout_s": 1, "stream.walks_per_weight": 0},
    )  # fmt: skip
    partitions = world.settings.kafka.partitions
    assert (partitions, world.settings.flink.parallelism) == (4, 2)
    user_in = a_user_per_partition(partitions, range(100, 200))
    even = [Event(user_in[0], 10, 5.0, 1_000), Event(user_in[0], 11, 5.0, 1_001)]
    send_events(world.settings, world.topic("ratings"), [
        *even, *(Event(user_in[p], 1, 5.0, 10**6) for p in (0, 2))])  # fmt: skip
    job = world.start("--from", "earliest")
    try:
        poll(lambda: final_counts(world.settings) == {(10, 11): 1}, 120, "the even transition")
        odd = [Event(user_in[1], 20, 5.0, 2_000), Event(user_in[1], 21, 5.0, 2_001),
               Event(user_in[3], 30, 5.0, 2_002), Event(user_in[3], 31, 5.0, 2_003)]  # fmt: skip
        send_raw(world.settings, world.topic("ratings"), [
            *((str(e.user_id).encode(), event_to_json(e)) for e in odd[:3]),
            (str(odd[3].user_id).encode(), json.dumps(odd[3]._asdict()).encode()),  # validator
        ])  # fmt: skip
        records = poll(
            lambda: r if len(r := read_topic(world.settings, world.topic("late"))) >= 4 else None,
            120,
            "the odd partitions' events in the late topic",
        )
    finally:
        JobWorld.kill(job)
    reported = sorted((json.loads(value) for *_, value in records), key=lambda r: r["item_id"])
    assert [Event(*(r[f] for f in Event._fields)) for r in reported] == odd
    assert final_counts(world.settings) == {(10, 11): 1}


# item -> {next item: count}; item 5 has no out-edges, so walks end there
TOY_GRAPH = {
    1: {2: 30, 3: 10, 4: 60},
    2: {1: 5, 3: 15},
    3: {4: 1, 5: 3},
    4: {1: 8, 2: 2, 5: 10},
}


def _toy_graph_events() -> tuple[list[Event], dict[int, int]]:
    """One user per transition of the toy graph; and each item's newest transition time."""
    events: list[Event] = []
    newest: dict[int, int] = {}
    user = 0
    for src, row in TOY_GRAPH.items():
        for dst, count in row.items():
            for _ in range(count):
                user += 1
                events += [Event(user, src, 5.0, 1_000 + user)]
                events += [Event(user, dst, 5.0, 1_001 + user)]
                newest[src] = 1_001 + user
    return events, newest


def test_background_refresh_starts_walks_in_proportion_to_weight(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    interval_s = 4
    world = job_world(local_stack, unique, tmp_path, **{
        "flink.parallelism": 1, "stream.emit_counts": "false", "stream.walks_per_weight": 0,
        # one walk per unit of weight per refresh
        "stream.refresh_walks_per_weight_hour": 3600 / interval_s,
        "stream.refresh_interval_s": interval_s})  # fmt: skip
    events, newest = _toy_graph_events()
    # A later event in every ratings partition releases every transition at once, so the
    # graph is complete well before the first refresh (an interval after an item's first).
    partitions = world.settings.kafka.partitions
    later = a_user_per_partition(partitions, range(10**6, 10**6 + 100))
    events += [Event(u, 1, 5.0, 10**7) for u in later.values()]
    send_events(world.settings, world.topic("ratings"), events)

    weights = {item: sum(row.values()) for item, row in TOY_GRAPH.items()}

    def between_rounds() -> tuple[list[dict[str, Any]], dict[int, float]] | None:
        """The samples once each item started 3+ whole rounds of one walk per unit of weight
        (a round's walks finish within a moment of each other; rounds are seconds apart)."""
        samples = _walks(world)
        starts = Counter(sample["items"][0] for sample in samples)
        rounds = {item: starts[item] / weight for item, weight in weights.items()}
        whole = all(r >= 3 and r == int(r) for r in rounds.values()) and set(starts) <= set(weights)
        return (samples, rounds) if whole else None

    job = world.start("--from", "earliest")
    try:
        samples, rounds = poll(between_rounds, 180, "3 whole refresh rounds at every item")
    finally:
        JobWorld.kill(job)
    assert max(rounds.values()) - min(rounds.values()) <= 1, rounds  # all at the same pace
    # a refresh walk covers its start item's counts, as new as its newest transition
    assert all(s["newest_event_time"] == newest[s["items"][0]] for s in samples)


def test_an_idle_item_is_forgotten_by_the_item_stage_and_every_walk_task(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """Item 1 (shard 1 of 128) goes idle; once its shard has counted a transition more than
    `stream.item_idle_ttl_s` later, a sweep forgets its edges, in the item stage and in each
    walk task's step tables, and its next transitions start it afresh."""
    world = job_world(local_stack, unique, tmp_path, **NO_IDLE_PARTITIONS, **{
        "stream.item_idle_ttl_s": 100, "stream.refresh_interval_s": 2})  # fmt: skip
    partitions = world.settings.kafka.partitions
    walk_tasks = range(walk_task_count(world.settings, in_mini_cluster=True))
    holders = [ITEM_STAGE] + [walk_task_holder(t) for t in walk_tasks]

    def send(events: list[Event], release_at: int, users: range) -> None:
        """`events`, then a single rating in every partition at `release_at`: the watermark
        passes every event before it."""
        release = a_user_per_partition(partitions, users)
        later = [Event(u, 1_000_000, 5.0, release_at) for u in release.values()]
        send_events(world.settings, world.topic("ratings"), [*events, *later])

    def zeroed() -> dict[str, set[tuple[int, int]]]:
        """The edges each holder wrote a weight of 0 for: forgotten."""
        gone: dict[str, set[tuple[int, int]]] = {holder: set() for holder in holders}
        for *_, value in read_topic(world.settings, world.topic("counts")):
            update = read_count_update(value)
            if update.weight == 0.0:
                gone[update.holder].add((update.src, update.dst))
        return gone

    def latest(edge: tuple[int, int]) -> dict[str, float]:
        """Each holder's newest weight of `edge`, by the broker's append time (the phases
        below are seconds apart)."""
        updates = sorted(
            (timestamp, read_count_update(value))
            for _, _, timestamp, _, value in read_topic(world.settings, world.topic("counts"))
        )
        return {u.holder: u.weight for _, u in updates if (u.src, u.dst) == edge}

    def transitions(src: int, dst: int, users: range, start: int) -> list[Event]:
        """A transition src -> dst of each user, at `start` + 10 * user + 1."""
        return [
            Event(user, item, 5.0, start + 10 * user + step)
            for user in users
            for step, item in enumerate((src, dst))
        ]

    # item 1 -> 2, three times by 1_031; then item 129 (shard 1 too) -> 130 at 2_041
    send(transitions(1, 2, range(1, 4), 1_000), 1_100, range(100, 200))
    job = world.start("--from", "earliest")
    try:
        poll(lambda: final_counts(world.settings).get((1, 2)) == 3, 180, "item 1's edge")
        send(transitions(129, 130, range(4, 5), 2_000), 2_100, range(200, 300))
        everywhere = {holder: {(1, 2)} for holder in holders}
        poll(lambda: zeroed() == everywhere, 180, "item 1 forgotten by every holder")
        # item 1 returns, with 20 transitions to item 3 from 3_000 on
        send(transitions(1, 3, range(5, 25), 3_000), 4_000, range(300, 400))

        def from_1_after_return() -> list[list[int]]:
            paths = [s["items"] for s in _walks(world) if s["newest_event_time"] >= 3_000]
            return [path for path in paths if path[0] == 1]

        def seen_so_far() -> str:
            counted = final_counts(world.settings).get((1, 3))
            late = len(read_topic(world.settings, world.topic("late")))
            walks = len(from_1_after_return())
            return f"{walks} such walks, item 1 -> 3 counted {counted}, {late} late ratings"

        def all_20() -> list[list[int]] | None:
            from_1 = from_1_after_return()
            return from_1 if len(from_1) == 20 else None

        paths = poll(all_20, 180, "the 20 walks of item 1's return", details=seen_so_far)
        # item 129 is idle by the return's time: the sweep after next forgets it
        poll(lambda: (129, 130) in zeroed()[ITEM_STAGE], 60, "item 129 forgotten")
        # and item 1 -> 2 once more: counted from nothing, not on from 3
        send(transitions(1, 2, range(25, 26), 4_500), 5_000, range(400, 500))

        def counted_again() -> dict[str, float] | None:
            weights = latest((1, 2))
            return weights if 0.0 not in weights.values() else None

        renewed = poll(counted_again, 180, "item 1 -> 2 counted again by every holder")
        counts = final_counts(world.settings)
    finally:
        JobWorld.kill(job)
    assert read_topic(world.settings, world.topic("late")) == []
    assert all(path[1] == 3 for path in paths), paths  # item 2 is out of every step table
    assert renewed == dict.fromkeys(holders, 1.0)
    assert counts[(1, 3)] == 20
    assert (1, 3) not in zeroed()[ITEM_STAGE]
    # the items topic announces item 1's neighbours afresh: 2 first, then 3 after its return
    items = [json.loads(v) for *_, v in read_topic(world.settings, world.topic("items"))]
    firsts = {tuple(r["neighbours"].items()) for r in items if r["item_id"] == 1 and r["first"]}
    assert firsts == {(("2", 1),), (("3", 1),)}


def _bias(previous: int, nxt: int, p: float, q: float) -> float:
    """Node2vec's bias of a toy-graph hop to `nxt` after `previous` (item 0 leads to 1)."""
    if nxt == previous:
        return 1 / p
    return 1.0 if nxt in TOY_GRAPH.get(previous, {1: 1}) else 1 / q


# Replicated at parallelism 2: first-order with two walk tasks (set), Node2vec with the
# mini-cluster's default in thread mode (one) and in process mode (two). Routed, 128 shards,
# items kept decoded: each toy item is its own shard, and hops step on through the items the
# task holds decoded; 2 shards, none kept (but the newest): hops within a shard read its
# state in the same call, nearly all others go through the feedback topic.
@pytest.mark.parametrize(
    ("stage", "parallelism", "walk_tasks", "shards", "cache", "p", "q", "mode"),
    [
        ("replicated", 2, 2, 128, 8_000_000, 1.0, 1.0, "thread"),
        ("replicated", 2, 0, 128, 8_000_000, 0.5, 2.0, "thread"),
        ("replicated", 2, 0, 128, 8_000_000, 0.5, 2.0, "process"),
        ("routed", 1, 0, 128, 8_000_000, 1.0, 1.0, "thread"),
        ("routed", 1, 0, 2, 0, 1.0, 1.0, "thread"),
    ],
    ids=[
        "replicated",
        "replicated-node2vec",
        "replicated-node2vec-process-mode",
        "routed-decoded",
        "routed-2-shards",
    ],
)
def test_streamed_walks_follow_the_transition_counts(
    local_stack: Settings,
    unique: str,
    tmp_path: Path,
    stage: str,
    parallelism: int,
    walk_tasks: int,
    shards: int,
    cache: int,
    p: float,
    q: float,
    mode: str,
) -> None:
    rate = 100
    world = job_world(local_stack, unique, tmp_path, **{"flink.parallelism": parallelism,
                      "flink.python_execution_mode": mode,
                      "stream.walks_per_weight": rate, "stream.emit_counts": "false",
                      "stream.walk_stage": stage, "stream.walk_tasks": walk_tasks,
                      "walks.p": p, "walks.q": q,
                      "stream.item_shards": shards,
                      "stream.item_cache_neighbours": cache})  # fmt: skip
    events, _ = _toy_graph_events()  # phase 1: the toy graph
    phase_two = 1_000_000  # 50 users go 0 -> 1 once the graph is complete: 50 x rate walks
    events += [Event(u, 0, 5.0, phase_two) for u in range(10_001, 10_051)]
    events += [Event(u, 1, 5.0, phase_two + 1) for u in range(10_001, 10_051)]
    events.append(Event(20_000, 1, 5.0, 10**7))  # moves the watermark past everything
    send_events(world.settings, world.topic("ratings"), events)

    transitions = sum(sum(row.values()) for row in TOY_GRAPH.values())
    expected_walks = rate * (transitions + 50)
    job = world.start("--from", "earliest")
    try:
        walks = poll(
            lambda: (w := _walks(world)) and len(w) >= expected_walks and w,
            240,
            f"{expected_walks} walks",
        )
    finally:
        JobWorld.kill(job)
    assert len(walks) == expected_walks

    # starts: exactly `rate` walks per transition out of each item, when it happened
    early = [w for w in walks if w["newest_event_time"] < phase_two]
    starts = Counter(w["items"][0] for w in early)
    assert starts == {item: rate * sum(row.values()) for item, row in TOY_GRAPH.items()}

    # hops of the walks started after the graph was complete follow its counts
    late = [w["items"] for w in walks if w["newest_event_time"] == phase_two + 1]
    assert len(late) == 50 * rate
    assert all(path[:2] == [0, 1] for path in late)
    # Full length or stopped at item 5, the only item without out-edges. (An early routed
    # walk may also stop at an item whose first transition is not counted yet when it
    # arrives: walk hops and transitions race to the item function. Phase two's transitions
    # come after all of phase one's, so its walks only meet complete counts.)
    assert all(len(path) == 10 or path[-1] == 5 for path in late)
    # Each hop by the item it leaves and the one before (Node2vec's state; first-order hops
    # do not depend on the one before, and are tested the same way).
    hops: dict[tuple[int, int], Counter[int]] = {}
    for path in late:
        for previous, here, there in zip(path, path[1:], path[2:], strict=False):
            hops.setdefault((previous, here), Counter())[there] += 1
    # One chi-square test over every state with enough hops (the statistics and degrees of
    # freedom add up), so the chance of a false alarm is 1%, not 1% per state.
    statistic, dof, table = 0.0, 0, {}
    for (previous, here), observed_hops in hops.items():
        row = TOY_GRAPH[here]
        assert set(observed_hops) <= set(row)
        odds = {nxt: count * _bias(previous, nxt, p, q) for nxt, count in row.items()}
        total = sum(odds.values())
        observed = [observed_hops[n] for n in row]
        expected = [sum(observed) * odds[n] / total for n in row]
        if min(expected) < 5:
            continue
        statistic += float(chisquare(observed, expected).statistic)
        dof += len(row) - 1
        table[previous, here] = (observed, expected)
    assert dof >= 6, table  # most hops are tested
    assert chi2.sf(statistic, dof) > 0.01, table

    crossed: Counter[int] = Counter()
    for *_, value in read_topic(world.settings, world.topic("walk_hops")):
        for item, batch in json.loads(value)["walks"].items():
            crossed[int(item)] += sum(newest == phase_two + 1 for _, newest in batch)
    if stage == "replicated":  # every walk is stepped to its end where it starts
        assert crossed.total() == 0
    elif cache:
        # Phase two's hops that crossed Kafka: with items kept decoded, only those to item 5
        # (no counts, so never decoded); else those to the other shard (one item may stay
        # decoded).
        assert {item for item, n in crossed.items() if n} == {5}, crossed
    else:
        across = Counter(b for p in late for a, b in pairwise(p) if a % shards != b % shards)
        assert all(crossed[item] <= n for item, n in across.items()), (crossed, across)
        assert crossed.total() > across.total() / 2, (crossed, across)


def _nastiest(users: range) -> list[tuple[str, bytes | None, bytes | None]]:
    """(expected reason, key, value) of records that once stopped the job or silenced it."""
    poison = [  # one per user, so every partition gets some: clocks far in the future
        ("rating_out_of_range", b'{"user_id":%d,"item_id":1,"rating":99,"event_time":99999999999}')
        for _ in users
    ] + [
        ("event_time_ahead", b'{"user_id":%d,"item_id":1,"rating":4.0,"event_time":99999999999}')
        for _ in users
    ]
    records: list[tuple[str, bytes | None, bytes | None]] = [
        (reason, str(user).encode(), value % user)
        for (reason, value), user in zip(poison, [*users, *users], strict=True)
    ]
    huge = b"1" + b"0" * 400
    event = b'{"user_id":%s,"item_id":7,"rating":%s,"event_time":%s}'
    records += [
        ("null_value", b"5", None),
        ("rating_out_of_range", b"5", event % (b"5", huge, b"1")),
        ("bad_id", b"5", event % (huge, b"4", b"1")),
        ("bad_event_time", b"5", event % (b"5", b"4", b"-" + huge)),
        ("rating_not_finite", b"5", event % (b"5", b"1e400", b"1")),
        ("bad_json", b"5", b"[" * 1_000),
        ("oversized", b"5", b'{"user_id":5,"pad":"' + b"x" * 1_000_000 + b'"}'),
        ("key_mismatch", b"\xff\xfe\x00", event % (b"5", b"4", b"1")),
        ("key_mismatch", None, event % (b"5", b"4", b"1")),
    ]  # fmt: skip
    return records


def test_no_record_stops_a_live_job_or_moves_its_event_time(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """Records that once failed the job (a tombstone, huge numbers, 1 MB) or silenced it (event
    times far in the future, rejected or not) are dead letters with their reasons, and the
    valid events around them all count, none late."""
    world = job_world(
        local_stack, unique, tmp_path, **NO_IDLE_PARTITIONS, **{"stream.walks_per_weight": 0}
    )
    rng = np.random.default_rng(12)
    n = 3_000
    users, items = rng.integers(1, 61, n), rng.integers(1, 80, n)
    times = np.sort(rng.integers(1_000, 500_000, n))
    valid = [
        Event(int(u), int(i), 4.5, int(t)) for u, i, t in zip(users, items, times, strict=True)
    ]
    nasty = _nastiest(range(1, 61))
    half = n // 2
    job = world.start("--from", "earliest")
    try:
        send_events(world.settings, world.topic("ratings"), valid[:half])
        send_raw(world.settings, world.topic("ratings"), [(k, v) for _, k, v in nasty])
        # the rest, then an event in every partition that moves the watermark past them all
        later = a_user_per_partition(world.settings.kafka.partitions, range(100, 200))
        send_events(world.settings, world.topic("ratings"), [
            *valid[half:], *(Event(u, 1, 5.0, 10**6) for u in later.values())])  # fmt: skip
        expected = _oracle(valid)
        poll(lambda: final_counts(world.settings) == expected, 180, "the valid events' counts")
        assert job.poll() is None, world.log.read_text()[-3000:]
        dead = [json.loads(v) for *_, v in read_topic(world.settings, world.topic("dead_letter"))]
    finally:
        JobWorld.kill(job)
    assert read_topic(world.settings, world.topic("late")) == []
    assert Counter(record["reason"] for record in dead) == Counter(r for r, *_ in nasty)
    large = [record for record in dead if record["reason"] == "oversized"]
    assert large[0]["truncated"]
    assert large[0]["value_bytes"] > 1_000_000
    assert len(json.dumps(large[0])) < 100_000


@pytest.mark.timeout(600)
def test_a_live_job_far_behind_does_not_take_a_stalled_partition_for_an_idle_one(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """A live job catching up reads records that reached the broker long ago. When one
    partition's records pause longer than `stream.idle_timeout_s` (a slow fetch, here a pause
    of its producer), it still holds the watermark back for `stream.behind_idle_timeout_s`,
    so its next records are on time, not late; the other partitions' events wait for it."""
    kafka = local_stack.kafka
    ratings = f"{unique}.ratings"
    admin = KafkaAdminClient(**kafka_python_config(kafka))
    # created by hand, with the producers' timestamps, which can be old; kept forever, or the
    # broker's time-based retention deletes the backlog, stamped in 1970, before the job reads it
    forever = {"retention.ms": "-1"}
    try:
        admin.create_topics([NewTopic(ratings, 4, 1, topic_configs=forever)])
    finally:
        admin.close()
    world = job_world(
        local_stack, unique, tmp_path,
        **{"stream.idle_timeout_s": 1, "stream.walks_per_weight": 0,
           "stream.behind_idle_timeout_s": 60},
    )  # fmt: skip
    user_in = a_user_per_partition(4, range(100, 200))
    producer = KafkaProducer(**kafka_python_config(kafka), acks="all")
    long_ago_ms = 10**10  # broker time in 1970: every record is read far behind it

    def send(events: list[Event]) -> None:
        for event in events:
            value = json.dumps(event._asdict()).encode()
            producer.send(ratings, value, str(event.user_id).encode(), timestamp_ms=long_ago_ms)
        producer.flush()

    def pair(partitions: tuple[int, ...], time: int, items: tuple[int, int]) -> list[Event]:
        return [Event(user_in[p], item, 5.0, time + k) for p in partitions for k, item in
                enumerate(items)]  # fmt: skip

    backlog = [*pair((0, 1, 2, 3), 1_000, (1, 2)), *pair((0, 1, 2, 3), 1_100, (9, 9))[::2]]
    ahead = pair((0, 2), 10**6, (3, 4))  # the even partitions run far ahead
    resumed = pair((1, 3), 2_000, (5, 6))  # the odd ones' next records, after their pause
    # single ratings of other users in every partition, far later: they release all the rest
    flush = [Event(u, 1, 5.0, 3 * 10**6) for u in a_user_per_partition(4, range(200, 300)).values()]
    send(backlog)
    job = world.start("--from", "earliest")
    try:
        poll(lambda: final_counts(world.settings) == {(1, 2): 4}, 240, "the backlog's pairs")
        send(ahead)
        # The odd partitions stay silent for five idle timeouts: taken for idle ones, they
        # would let the even ones' watermark pass their next records. The pause is the test.
        time.sleep(5 * world.settings.stream.idle_timeout_s)
        send([*resumed, *flush])

        def late() -> set[Event]:
            records = read_topic(world.settings, world.topic("late"))
            return {read_late_event(v).event for *_, v in records}

        def counted_or_late() -> tuple[set[Event]] | None:
            """The late events (in a tuple: none is a result), once every other is counted."""
            reported = late()
            on_time = [e for e in resumed if e not in reported]
            expected = _oracle([*backlog, *ahead, *on_time, *flush])
            return (reported,) if final_counts(world.settings) == expected else None

        (reported,) = poll(counted_or_late, 240, "every event counted or late")
    finally:
        JobWorld.kill(job)
        producer.close()
    assert reported == set()  # held back through the pause: none late
