"""A standalone Flink cluster from the scripts the apache-flink package ships (pyflink/bin):
one JobManager and TaskManagers of one slot each, as separate JVMs on loopback (a job at
parallelism N runs in N processes, as on separate machines), with their own config, logs and
temporary files under a given directory. Used by the cluster tests and the walk benchmark."""

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyflink
import pytest
import yaml

from tests.conftest import poll
from tests.ports import free_port

PYFLINK = Path(pyflink.__file__).parent


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
    task_managers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.rest}{path}", timeout=10) as response:
            return json.load(response)

    def submit(self, arguments: Sequence[str], log_path: Path, detached: bool = False) -> str:
        """`flink run` the job (`walkstream ARGUMENTS`) with the shipped client config; return
        the client's output (appended to `log_path`)."""
        command = [
            str(PYFLINK / "bin" / "flink"), "run", *(["--detached"] if detached else []),
            "--jobmanager", self.rest,
            "--pyModule", "streaming.cli", "--pyClientExecutable", sys.executable,
            *arguments,
        ]  # fmt: skip
        env = {**os.environ, "FLINK_LOG_DIR": str(self.root / "log")}  # not into site-packages
        with log_path.open("ab") as log:
            # its own group: on a timeout the Python client process it starts dies with it
            client = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            client.wait(timeout=180)
        except subprocess.TimeoutExpired:
            _kill_group(client)
            pytest.fail(f"flink run did not end in 180s:\n{_tail(log_path)}")
        output = log_path.read_text()
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


@contextmanager
def standalone_cluster(root: Path, task_managers: int) -> Iterator[Cluster]:
    """A JobManager and `task_managers` TaskManagers of one slot each, started in the foreground
    under `root`, each in its own process group, killed (and checked gone) on exit.

    flink-python (in the package's opt/) goes on the cluster's classpath: `flink run` ships it
    with each job too, but then every job loads it in its own class loader, and the embedded
    interpreter's native library (pemja) loads into one class loader per JVM only: on Java 17
    a second Python job on a TaskManager would fail (NoSuchFieldException:
    loadedLibraryNames) and restart until it gives up.
    """
    conf, lib, log = root / "conf", root / "lib", root / "log"
    for directory in (conf, lib, log):
        directory.mkdir(parents=True)
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
    processes: list[subprocess.Popen[bytes]] = []  # the JobManager, then the TaskManagers

    def slots() -> int | None:
        if any(process.poll() is not None for process in processes):
            logs = "\n".join(_tail(path, 2000) for path in sorted(log.iterdir()))
            pytest.fail(f"a cluster process exited:\n{logs}")
        try:
            return int(cluster.get("/overview")["slots-total"])
        except (urllib.error.URLError, ConnectionError):
            return None  # not listening yet

    try:
        for n, script in enumerate(["jobmanager.sh", *["taskmanager.sh"] * task_managers]):
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
        cluster.task_managers = processes[1:]
        poll(lambda: slots() == task_managers, 120, f"{task_managers} task slots at {cluster.rest}")
        yield cluster
    finally:
        for process in processes:
            _kill_group(process)
