"""A StreamExecutionEnvironment configured from settings, for the mini-cluster and `flink run`."""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from streaming.config import Settings
from streaming.errors import SetupError

__all__ = ["execution_environment", "flink_log_dir", "job_jars"]

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


def flink_log_dir(settings: Settings) -> Path:
    """Where a job run here (not one submitted with `flink run`) writes Flink's own log."""
    return Path(os.environ.get("FLINK_LOG_DIR", settings.runtime.state_dir / "logs" / "flink"))


def execution_environment(
    settings: Settings, restore_from: Path | None = None
) -> StreamExecutionEnvironment:
    """Python functions run in thread mode (several times faster than process mode) with this
    interpreter and its packages, not whatever `python` is first on PATH."""
    config = Configuration()
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("python.execution-mode", "thread")
    # Thread mode embeds CPython without running site: give it our packages and this checkout.
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
    # The local mini-cluster logs into FLINK_LOG_DIR, else inside the installed pyflink package.
    log_dir = flink_log_dir(settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    env = StreamExecutionEnvironment.get_execution_environment(config)
    # Added, not set as pipeline.jars: under `flink run` that option already holds the
    # flink-python jar, which a cluster's TaskManagers need too and do not have in lib/.
    env.add_jars(*(jar.as_uri() for jar in job_jars(settings)))
    env.set_parallelism(settings.flink.parallelism)
    return env
