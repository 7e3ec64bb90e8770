"""The job on a real standalone Flink cluster (`tests.flink_cluster`: a JobManager and two
TaskManagers of one slot each), submitted with `flink run`, not the mini-cluster. The batch
pipeline is the oracle, as in test_job.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from streaming.config import Settings
from streaming.core.events import Event
from streaming.producer import produce_file
from streaming.rating_files import load_events
from streaming.records import ITEM_STAGE, Sample, read_sample, walk_task_holder
from tests.conftest import poll
from tests.flink_cluster import Cluster, standalone_cluster
from tests.job.jobs import a_user_per_partition, batch_counts, final_counts, job_world, synthetic
from tests.kafka_records import read_topic, send_events

pytestmark = pytest.mark.integration

TASK_MANAGERS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone_cluster(tmp_path_factory.mktemp("flink"), TASK_MANAGERS) as started:
        yield started


def test_flink_run_replay_gives_exactly_the_batch_counts(
    cluster: Cluster, local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)  # flink.parallelism=2
    ratings = synthetic(tmp_path, 20_000, seed=11)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    output = cluster.submit(world.arguments("--from", "earliest", "--until", "latest"), world.log)

    assert "job: finished after" in output
    job = cluster.job(output)
    assert job["state"] == "FINISHED", cluster.failures(job["jid"])
    assert len(job["vertices"]) >= 4
    # every task runs twice: none holds all users (the per-user order is keyed by user)
    parallelism = {vertex["name"]: vertex["parallelism"] for vertex in job["vertices"]}
    assert any("user-transitions" in name for name in parallelism)
    assert set(parallelism.values()) == {2}
    expected = batch_counts(ratings, world.settings)
    assert sum(expected.values()) > 5_000
    assert final_counts(world.settings) == expected


def test_a_detached_submission_returns_and_the_job_runs_on_in_the_cluster(
    cluster: Cluster, local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """After the test above this is also a second Python job on the same TaskManagers."""
    world = job_world(local_stack, unique, tmp_path)
    ratings = synthetic(tmp_path, 5_000, seed=12)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    output = cluster.submit(
        world.arguments("--from", "earliest", "--until", "latest"), world.log, detached=True
    )

    assert "job: submitted detached" in output
    job_id = cluster.job(output)["jid"]
    # a restart is a failure too: the job would only fail again after its restart delays
    ended = {"FINISHED", "FAILED", "CANCELED", "RESTARTING"}
    state = poll(
        lambda: (state := cluster.get(f"/jobs/{job_id}")["state"]) in ended and state,
        120,
        f"job {job_id} to end",
    )
    assert state == "FINISHED", cluster.failures(job_id)
    assert final_counts(world.settings) == batch_counts(ratings, world.settings)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_live_replicated_node2vec_walks_run_on_two_tasks_in_the_cluster(
    cluster: Cluster, local_stack: Settings, unique: str, tmp_path: Path, mode: str
) -> None:
    """Two walk tasks in the cluster: both hold the whole graph (the batch oracle's counts), and
    between them they step every walk started, without a message on the feedback topic. In
    process mode each TaskManager runs the functions in Python processes of its own."""
    rate = 2
    world = job_world(local_stack, unique, tmp_path, **{  # flink.parallelism=2
        "flink.python_execution_mode": mode,
        "stream.walks_per_weight": rate, "walks.p": 0.5, "walks.q": 2.0,
        "stream.transition_samples": "false", "users.enabled": "false"})  # fmt: skip
    ratings = synthetic(tmp_path, 5_000, seed=13)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    columns, _ = load_events(ratings, "csv", world.settings.events)
    later = int(columns.event_time.max()) + 10**6
    partitions = world.settings.kafka.partitions

    def release(event_time: int, users: range) -> None:
        """A later event in every partition (a new user each: no transition) releases every
        event before it."""
        chosen = a_user_per_partition(partitions, users)
        send_events(
            world.settings,
            world.topic("ratings"),
            [Event(u, 1, 5.0, event_time) for u in chosen.values()],
        )

    release(later, range(10**9, 10**9 + 100))
    expected = batch_counts(ratings, world.settings)
    holders = [ITEM_STAGE, walk_task_holder(0), walk_task_holder(1)]

    def walks() -> list[Sample]:
        samples = (read_sample(v) for *_, v in read_topic(world.settings, world.topic("samples")))
        return [sample for sample in samples if sample.kind == "walk"]

    def holding(graph: dict[tuple[int, int], int]) -> bool:
        return all(final_counts(world.settings, holder=h) == graph for h in holders)

    def python_processes_started() -> int:
        """Python worker processes the TaskManagers have started (process mode) so far."""
        logs = (cluster.root / "log").glob("*taskexecutor*.log")
        return sum(log.read_text().count("Obtained shared Python process") for log in logs)

    started_before = python_processes_started()
    output = cluster.submit(world.arguments("--from", "earliest"), world.log, detached=True)
    job_id = cluster.job(output)["jid"]
    try:
        poll(
            lambda: holding(expected),
            180,
            "the oracle's counts in the item stage and both walk tasks",
            lambda: cluster.failures(job_id),
        )
        # Phase two, once both walk tasks hold the whole graph: new users take its heaviest
        # edge, and the walks they start can only meet a table at least that complete.
        source, target = max(expected, key=lambda edge: expected[edge])
        newcomers = range(10**9 + 1_000, 10**9 + 1_050)
        phase_two = [Event(u, source, 5.0, later + 1) for u in newcomers]
        phase_two += [Event(u, target, 5.0, later + 2) for u in newcomers]
        send_events(world.settings, world.topic("ratings"), phase_two)
        release(later + 10**6, range(10**9 + 2_000, 10**9 + 2_100))
        grown = {**expected, (source, target): expected[(source, target)] + len(newcomers)}
        poll(lambda: holding(grown), 120, "phase two's counts", lambda: cluster.failures(job_id))
        started = rate * sum(grown.values())
        found = poll(lambda: len(w := walks()) >= started and w, 120, f"{started} walks")
        (walk_vertex,) = (v for v in cluster.job(output)["vertices"] if "walk-tasks" in v["name"])
        subtasks = cluster.get(f"/jobs/{job_id}/vertices/{walk_vertex['id']}")["subtasks"]
    finally:
        cluster.cancel(job_id)
    assert len(found) == started
    assert all(edge in expected for walk in found for edge in pairwise(walk.items))
    late = [walk.items for walk in found if walk.newest_event_time > later]
    assert len(late) == rate * len(newcomers)
    assert all(path[0] == source for path in late)
    # A walk that met the whole graph ends at full length or at an item without out-edges.
    length, dead_ends = (
        world.settings.walks.length,
        {t for _, t in expected} - {s for s, _ in expected},
    )
    assert all(len(path) == length or path[-1] in dead_ends for path in late)
    assert read_topic(world.settings, world.topic("walk_hops")) == []
    assert len({subtask["taskmanager-id"] for subtask in subtasks}) == TASK_MANAGERS
    assert (python_processes_started() > started_before) == (mode == "process")
