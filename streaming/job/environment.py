"""A StreamExecutionEnvironment configured from settings, for the mini-cluster and `flink run`.

The local mini-cluster (`walkstream job`) is closed and logs where the job says: every server
it starts listens on loopback only, and Flink's log goes to a directory of its own per job run
under the runtime home, rolled over by size. Under `flink run` the cluster decides both.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import os
import site
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import IO

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from streaming.config import Settings
from streaming.errors import SetupError

__all__ = ["execution_environment", "flink_log_dir", "job_jars", "under_flink_run"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


_FUNCTIONS_JAR = "walkstream-functions.jar"


def job_jars(settings: Settings) -> list[Path]:
    """The Kafka connector and the job's Java functions, as `make setup` installs them."""
    directory = settings.runtime.jars_dir / "flink"
    jars = sorted(directory.glob("*.jar"))
    if directory / _FUNCTIONS_JAR not in jars or len(jars) < 2:
        raise SetupError(
            f"{directory} lacks the Flink Kafka connector or {_FUNCTIONS_JAR}: run `make setup`"
        )
    return jars


# The mini-cluster's servers (REST API and web UI, blob server, RPC, the TaskManager's data
# port) bind these; Flink's defaults are every interface. The REST API has no
# authentication, so it also takes no jars: whoever reaches loopback (another user of this
# host) must not run code in the job's JVM (docs/security.md says what they still can do).
_LOCAL_CLUSTER_OPTIONS = {
    "rest.address": "127.0.0.1",
    "rest.bind-address": "127.0.0.1",
    "jobmanager.rpc.address": "127.0.0.1",
    "jobmanager.bind-host": "127.0.0.1",
    "taskmanager.host": "127.0.0.1",
    "taskmanager.bind-host": "127.0.0.1",
    "web.submit.enable": "false",
}


def under_flink_run() -> bool:
    """Whether `flink run` started this process (it hands over its own JVM's gateway port)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


@functools.cache
def _run_name() -> str:
    """This process's job run, by the time it was first asked for and the PID: the same name
    for every call, so the directory the job prints is the one it logs to."""
    return f"job-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def flink_log_dir(settings: Settings) -> Path | None:
    """Where this process's job writes Flink's log: FLINK_LOG_DIR if set, else a directory of
    its own under runtime.state_dir/logs; None under `flink run`, where the cluster's log
    directory holds it."""
    if under_flink_run():
        return None
    default = settings.runtime.state_dir / "logs" / _run_name()
    return Path(os.environ.get("FLINK_LOG_DIR", default))


_ROTATE_BYTES = 50 * 2**20  # as flink-log4j2.properties rolls Flink's log
_ROTATE_KEEP = 5


def _copy_lines(stream: IO[bytes], path: Path) -> None:
    """Append each line of `stream` to `path`, rotated like Flink's log, until it ends."""
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=_ROTATE_BYTES, backupCount=_ROTATE_KEEP
    )
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace").rstrip("\n")
        handler.emit(logging.makeLogRecord({"msg": text, "args": None}))
    handler.close()


def _local_logging(log_dir: Path) -> None:
    """Point the JVM that PyFlink is about to start at `log_dir` and a rolling log4j2 config,
    and keep its standard error there too.

    PyFlink reads FLINK_LOG_DIR and LOG4J_PROPERTIES when it launches the JVM, so this runs
    before anything asks for the gateway (creating a Configuration does). The JVM's standard
    error is where the Python functions' own output goes in thread mode (they run inside it);
    PyFlink leaves it on a pipe that nothing reads, which would block the writing task once
    64 KB filled it. A thread copies it to log_dir/stderr.log instead."""
    import pyflink.java_gateway as gateway

    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FLINK_LOG_DIR"] = str(log_dir)
    log4j = resources.files("streaming.runtime") / "flink-log4j2.properties"
    os.environ["LOG4J_PROPERTIES"] = str(log4j)
    launch = gateway.launch_gateway_server_process

    def launch_and_keep_stderr(env: dict[str, str], args: list[str]) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = launch(env, args)
        if process.stderr is not None:
            threading.Thread(
                target=_copy_lines,
                args=(process.stderr, log_dir / "stderr.log"),
                name="flink-jvm-stderr",
                daemon=True,
            ).start()
        return process

    gateway.launch_gateway_server_process = launch_and_keep_stderr


def execution_environment(
    settings: Settings, restore_from: Path | None = None
) -> StreamExecutionEnvironment:
    """Python functions run in `flink.python_execution_mode` (thread: inside the JVM, one
    interpreter for all its tasks; process: a Python process per task slot) with this
    interpreter and its packages, not whatever `python` is first on PATH."""
    log_dir = flink_log_dir(settings)
    if log_dir is not None:
        _local_logging(log_dir)
        # PyFlink's "loopback" worker pool would serve process-mode Python workers from this
        # process, on every interface; with this each task slot starts its own worker process.
        os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 - PyFlink's name
    config = Configuration()
    if log_dir is not None:
        for key, value in _LOCAL_CLUSTER_OPTIONS.items():
            config.set_string(key, value)
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("python.execution-mode", settings.flink.python_execution_mode)
    # Thread mode embeds CPython without running site: give it (and the process-mode workers)
    # our packages and this checkout.
    python_path = [*site.getsitepackages(), str(_PROJECT_ROOT)]
    config.set_string("python.pythonpath", os.pathsep.join(python_path))
    # Chained operators pass records on without a copy (a profile found copying in every
    # thread); Flink SQL's operators, most of the job, do not keep or change their input.
    config.set_string("pipeline.object-reuse", "true")
    config.set_string("state.backend.type", settings.flink.state_backend)
    config.set_string("execution.checkpointing.dir", settings.checkpoint_dir.resolve().as_uri())
    config.set_string(
        "execution.checkpointing.interval", f"{settings.flink.checkpoint_interval_ms} ms"
    )
    # Keep checkpoints when the job stops or dies, so `--from-checkpoint latest` can resume.
    config.set_string(
        "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
    )
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", "10")
    config.set_string("restart-strategy.fixed-delay.delay", "5 s")
    if restore_from is not None:
        config.set_string("execution.state-recovery.path", restore_from.resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    # Added, not set as pipeline.jars: under `flink run` that option already holds the
    # flink-python jar, which a cluster's TaskManagers need too and do not have in lib/.
    env.add_jars(*(jar.as_uri() for jar in job_jars(settings)))
    env.set_parallelism(settings.flink.parallelism)
    return env
