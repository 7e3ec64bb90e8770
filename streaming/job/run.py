"""Run the job: in the local mini-cluster (`walkstream job`) or under `flink run`."""

from __future__ import annotations

from pathlib import Path

from streaming.config import Settings
from streaming.errors import ConfigError
from streaming.job.environment import execution_environment
from streaming.job.pipeline import build_job
from streaming.job.positions import Position
from streaming.topics import ensure_topics

__all__ = ["latest_checkpoint", "refuse_routed_node2vec", "run_job"]


def latest_checkpoint(checkpoint_dir: Path) -> Path:
    """The newest completed checkpoint (a chk-N directory with its _metadata) of any job."""
    completed = sorted(
        checkpoint_dir.glob("*/chk-*/_metadata"), key=lambda path: path.stat().st_mtime
    )
    if not completed:
        raise ConfigError(
            f"no completed checkpoint under {checkpoint_dir} (flink.checkpoint_dir): "
            "start without --from-checkpoint, or give a savepoint with --from-savepoint"
        )
    return completed[-1].parent


def refuse_routed_node2vec(settings: Settings) -> None:
    """Routed walks are first-order (a hop's previous item may live in another task): with
    `stream.walk_stage=routed`, `walks.p`/`walks.q` other than 1 are refused, not ignored."""
    walks = settings.walks
    if settings.stream.walk_stage == "routed" and (walks.p != 1.0 or walks.q != 1.0):
        raise ConfigError(
            f"walks.p={walks.p:g}, walks.q={walks.q:g}: routed walks are first-order only: "
            "run the job with stream.walk_stage=replicated, or walks.p=1 and walks.q=1"
        )


def run_job(
    settings: Settings, start: Position, until: Position | None, restore_from: Path | None
) -> float | None:
    """Run until the input ends (bounded) or forever; return the job's net runtime in s, or
    None when `flink run --detached` only submitted it (the job then has no result here)."""
    refuse_routed_node2vec(settings)
    topics = settings.kafka.topics
    ensure_topics(
        settings.kafka,
        [topics.ratings, topics.dead_letter, topics.late, topics.samples, topics.items,
         topics.walk_hops, topics.counts, topics.users],
    )  # fmt: skip
    env = execution_environment(settings, restore_from)
    build_job(env, settings, start, until)
    result = env.execute("walkstream")
    if not result._j_job_execution_result.isJobExecutionResult():
        return None  # a detached submission: asking for the runtime would raise
    return float(result.get_net_runtime()) / 1000
