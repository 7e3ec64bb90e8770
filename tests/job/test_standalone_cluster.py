"""The job on a real standalone Flink cluster, submitted with `flink run`, not the mini-cluster.

The cluster comes from the scripts the apache-flink package ships (pyflink/bin): one JobManager
and two TaskManagers with one slot each, as three JVMs on loopback (a job at parallelism 2 runs in
two processes, as on separate machines), with their own config, logs and temporary files under
the test's directory. The batch pipeline is the oracle, as in test_job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyflink
import pytest
import yaml

from streaming.config import Settings
from streaming.core.events import Event
from streaming.producer import produce_file
from streaming.rating_files import load_events
from streaming.records import ITEM_STAGE, read_sample, walk_task_holder
from tests.conftest import poll
from tests.job.jobs import (
    JobWorld,
    a_user_per_partition,
    batch_counts,
    final_counts,
    job_world,
    synthetic,
)
from tests.kafka_records import read_topic, send_events
from tests.ports import free_port

pytestmark = pytest.mark.integration

PYFLINK = Path(pyflink.__file__).parent
TASK_MANAGERS = 2
SLOTS = TASK_MANAGERS  # one per TaskManager


def _config(root: Path, rest_port: int) -> dict[str, object]:
    """Everything on loopback; ports that are dialled from this config are free ones, the
    others are 0 (the OS picks one as the process binds: no race with other tests)."""
    shipped = yaml.safe_load((PYFLINK / "conf" / "config.yaml").read_text())
    return {
        "env.java.opts.all": shipped["env"]["java"]["opts"]["all"],  # Java 17 module opens
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.port": free_port(),
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": rest_port,
        "blob.server.port": 0,
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.rpc.port": 0,
        "taskmanager.data.port": 0,
        "metrics.internal.query-service.port": 0,
        "taskmanager.numberOfTaskSlots": 1,
        "jobmanager.memory.process.size": "1g",
        "taskmanager.memory.process.size": "1g",
        "taskmanager.memory.managed.size": "96m",  # hashmap state; leaves the task heap room
        "io.tmp.dirs": str(root / "tmp"),
        "blob.storage.directory": str(root / "blobs"),
        "web.tmpdir": str(root / "web"),
    }


def _tail(path: Path, chars: int = 5000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path})"


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies aside), as `ps` sees it."""
    table = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True)
    rows = (line.split() for line in table.stdout.splitlines())
    return any(int(group) == pgid and not stat.startswith("Z") for group, stat in rows)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the process and everything it started (its group, which has its pid as id)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    poll(lambda: not _group_alive(process.pid), 30, f"process group of {process.args} to end")


@dataclass
class Cluster:
    root: Path
    rest: str  # host:port of the REST API: what `flink run --jobmanager` takes

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.rest}{path}", timeout=10) as response:
            return json.load(response)

    def submit(self, world: JobWorld, *job_args: str, detached: bool = False) -> str:
        """`flink run` the job with the shipped client config; return the client's output."""
        command = [
            str(PYFLINK / "bin" / "flink"), "run", *(["--detached"] if detached else []),
            "--jobmanager", self.rest,
            "--pyModule", "streaming.cli", "--pyClientExecutable", sys.executable,
            *world.arguments(*job_args),
        ]  # fmt: skip
        env = {**os.environ, "FLINK_LOG_DIR": str(self.root / "log")}  # not into site-packages
        with world.log.open("ab") as log:
            # its own group: on a timeout the Python client process it starts dies with it
            client = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            client.wait(timeout=180)
        except subprocess.TimeoutExpired:
            _kill_group(client)
            pytest.fail(f"flink run did not end in 180s:\n{_tail(world.log)}")
        output = world.log.read_text()
        assert client.returncode == 0, f"flink run exited {client.returncode}:\n{output[-5000:]}"
        return output

    def job(self, output: str) -> dict[str, Any]:
        """The REST API's view of the job whose submission `output` reports."""
        found = re.search(r"JobID ([0-9a-f]{32})", output)
        assert found, output[-5000:]
        job: dict[str, Any] = self.get(f"/jobs/{found.group(1)}")
        return job

    def cancel(self, job_id: str) -> None:
        request = urllib.request.Request(
            f"http://{self.rest}/jobs/{job_id}?mode=cancel", method="PATCH"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def failures(self, job_id: str) -> str:
        entries = self.get(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {})
        return "\n".join(entry["stacktrace"][:2000] for entry in entries.get("entries", [])[:2])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A JobManager and two TaskManagers started in the foreground, each in its own process group,
    killed (and checked gone) however the tests end.

    flink-python (in the package's opt/) goes on the cluster's classpath: `flink run` ships it
    with each job too, but then every job loads it in its own class loader, and the embedded
    interpreter's native library (pemja) loads into one class loader per JVM only: on Java 17
    a second Python job on a TaskManager would fail (NoSuchFieldException:
    loadedLibraryNames) and restart until it gives up.
    """
    root = tmp_path_factory.mktemp("flink")
    conf, lib, log = root / "conf", root / "lib", root / "log"
    for directory in (conf, lib, log):
        directory.mkdir()
    for logging in (PYFLINK / "conf").glob("log*"):
        shutil.copy(logging, conf)
    for jar in [*(PYFLINK / "lib").glob("*.jar"), *(PYFLINK / "opt").glob("flink-python-*.jar")]:
        (lib / jar.name).symlink_to(jar)
    cluster = Cluster(root, f"127.0.0.1:{free_port()}")
    config = _config(root, int(cluster.rest.rsplit(":", 1)[1]))
    (conf / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    env = {
        **os.environ,
        "FLINK_CONF_DIR": str(conf),
        "FLINK_LIB_DIR": str(lib),
        "FLINK_LOG_DIR": str(log),
        "FLINK_PID_DIR": str(root),  # not /tmp, where other clusters keep theirs
    }
    processes: list[subprocess.Popen[bytes]] = []

    def slots() -> int | None:
        if any(process.poll() is not None for process in processes):
            logs = "\n".join(_tail(path, 2000) for path in sorted(log.iterdir()))
            pytest.fail(f"a cluster process exited:\n{logs}")
        try:
            return int(cluster.get("/overview")["slots-total"])
        except (urllib.error.URLError, ConnectionError):
            return None  # not listening yet

    try:
        for n, script in enumerate(["jobmanager.sh", *["taskmanager.sh"] * TASK_MANAGERS]):
            with (log / f"{n}-{script}.out").open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [str(PYFLINK / "bin" / script), "start-foreground"],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        poll(lambda: slots() == SLOTS, 120, f"{SLOTS} task slots at {cluster.rest}")
        yield cluster
    finally:
        for process in processes:
            _kill_group(process)


def test_flink_run_replay_gives_exactly_the_batch_counts(
    cluster: Cluster, local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    world = job_world(local_stack, unique, tmp_path)  # flink.parallelism=2
    ratings = synthetic(tmp_path, 20_000, seed=11)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    output = cluster.submit(world, "--from", "earliest", "--until", "latest")

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
    output = cluster.submit(world, "--from", "earliest", "--until", "latest", detached=True)

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


def test_live_replicated_node2vec_walks_run_on_two_tasks_in_the_cluster(
    cluster: Cluster, local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    """Two walk tasks in the cluster: both hold the whole graph (the batch oracle's counts), and
    between them they step every walk started, without a message on the feedback topic."""
    rate = 2
    world = job_world(local_stack, unique, tmp_path, **{  # flink.parallelism=2
        "stream.walks_per_weight": rate, "walks.p": 0.5, "walks.q": 2.0,
        "stream.transition_samples": "false", "users.enabled": "false"})  # fmt: skip
    ratings = synthetic(tmp_path, 5_000, seed=13)
    produce_file(world.settings, ratings, "csv", report=lambda _: None)
    # A later event in every partition (a new user each: no transition) releases every real one.
    columns, _ = load_events(ratings, "csv", world.settings.events)
    later = int(columns.event_time.max()) + 10**6
    users = a_user_per_partition(world.settings.kafka.partitions, range(10**9, 10**9 + 100))
    send_events(
        world.settings, world.topic("ratings"), [Event(u, 1, 5.0, later) for u in users.values()]
    )
    expected = batch_counts(ratings, world.settings)
    holders = [ITEM_STAGE, walk_task_holder(0), walk_task_holder(1)]

    def walks() -> list[list[int]]:
        samples = (read_sample(v) for *_, v in read_topic(world.settings, world.topic("samples")))
        return [sample.items for sample in samples if sample.kind == "walk"]

    output = cluster.submit(world, "--from", "earliest", detached=True)
    job_id = cluster.job(output)["jid"]
    try:
        poll(
            lambda: all(final_counts(world.settings, holder=h) == expected for h in holders),
            180,
            "the oracle's counts in the item stage and both walk tasks",
            lambda: cluster.failures(job_id),
        )
        started = rate * sum(expected.values())
        found = poll(lambda: len(w := walks()) >= started and w, 120, f"{started} walks")
        (walk_vertex,) = (v for v in cluster.job(output)["vertices"] if "walk-tasks" in v["name"])
        subtasks = cluster.get(f"/jobs/{job_id}/vertices/{walk_vertex['id']}")["subtasks"]
    finally:
        cluster.cancel(job_id)
    assert len(found) == started
    assert all(edge in expected for path in found for edge in pairwise(path))
    assert sum(len(path) - 1 for path in found) > 5 * started  # walks go on, not stop early
    assert read_topic(world.settings, world.topic("walk_hops")) == []
    assert len({subtask["taskmanager-id"] for subtask in subtasks}) == TASK_MANAGERS
