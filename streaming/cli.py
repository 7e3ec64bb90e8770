"""The `walkstream` command: one subcommand per step of running the system."""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from streaming.config import (
    ENV_PREFIX,
    Settings,
    load_settings,
    parse_assignments,
    split_host_port,
)
from streaming.errors import ConfigError, RuntimeServiceError, StoreError, WalkstreamError
from streaming.runtime import LocalStack, install_runtime

if TYPE_CHECKING:
    from streaming.store.client import VersionView

__all__ = ["main"]

_EPILOG = f"""\
settings: defaults < TOML file (--config or {ENV_PREFIX}CONFIG) < environment
({ENV_PREFIX}SECTION__FIELD, e.g. {ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS) < --set SECTION.FIELD=VALUE.
`walkstream config` prints the effective settings.
"""

_PROBE_TIMEOUT_S = 3.0
_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped
_READER_GONE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader left


def _require_kafka(settings: Settings) -> None:
    """Fail now if no bootstrap server takes a connection: the Kafka clients would retry for
    30 s first, and `produce` would load its whole file before that."""
    reasons = []
    for server in settings.kafka.bootstrap_servers.split(","):
        try:
            socket.create_connection(split_host_port(server), timeout=_PROBE_TIMEOUT_S).close()
        except OSError as exc:
            reasons.append(f"{server}: {exc.strerror or exc}")
        else:
            return
    raise RuntimeServiceError(
        f"cannot reach Kafka ({'; '.join(reasons)}): start it with `walkstream up`, or point "
        "kafka.bootstrap_servers at a running broker"
    )


def _setup(settings: Settings, _: argparse.Namespace) -> int:
    began = time.monotonic()
    install_runtime(settings)
    print(f"setup: done in {time.monotonic() - began:.1f}s")
    return 0


def _up(settings: Settings, _: argparse.Namespace) -> int:
    stack = LocalStack(settings)
    stack.up()
    return _print_status(stack)


def _down(settings: Settings, _: argparse.Namespace) -> int:
    LocalStack(settings).down()
    return 0


def _status(settings: Settings, _: argparse.Namespace) -> int:
    return _print_status(LocalStack(settings))


def _print_status(stack: LocalStack) -> int:
    statuses = stack.status()
    for status in statuses:
        print(status.line())
    return 0 if all(status.answering for status in statuses) else 1


def _config(settings: Settings, _: argparse.Namespace) -> int:
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return 0


def _batch(settings: Settings, args: argparse.Namespace) -> int:
    from batch.commands import run_batch

    return run_batch(settings, args)


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from batch.commands import run_eval

    return run_eval(settings, args)


def _synth(settings: Settings, args: argparse.Namespace) -> int:
    from batch.commands import run_synth

    return run_synth(settings, args)


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    from batch.commands import add_batch_arguments

    add_batch_arguments(parser)


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    from batch.commands import add_eval_arguments

    add_eval_arguments(parser)


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    from batch.commands import add_synth_arguments

    add_synth_arguments(parser)


def _produce_arguments(parser: argparse.ArgumentParser) -> None:
    from streaming.rating_files import FORMATS

    parser.add_argument("path", type=Path, help="ratings file (.gz is fine)")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="input format")
    parser.add_argument("--topic", help="default: kafka.topics.ratings")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="send at this rate")
    pace.add_argument(
        "--speedup", type=float, metavar="X", help="replay the event-time spacing X times faster"
    )


def _produce(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.producer import Pacer, produce_file

    try:
        pacer = Pacer(rate=args.rate, speedup=args.speedup)
    except ValueError as exc:
        raise ConfigError(f"--rate/--speedup: {exc}") from None
    topic = args.topic or settings.kafka.topics.ratings
    _require_kafka(settings)
    print(f"produce: {args.path} ({args.format}) -> {topic} at {settings.kafka.bootstrap_servers}")
    result = produce_file(settings, args.path, args.format, topic, pacer)
    print(result.summary)
    print(
        f"produce: sent {result.sent:,} events in event-time order, keyed by user, in "
        f"{result.seconds:.1f}s ({result.sent / max(result.seconds, 1e-9):,.0f}/s); "
        f"rejected {result.rejected:,}"
    )
    return 0


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="start",
        default="committed",
        metavar="POSITION",
        help="earliest | latest | committed (the job's group offsets, else earliest) | "
        "timestamp:EPOCH_MS | offsets:PARTITION:OFFSET,...",
    )
    parser.add_argument(
        "--until",
        metavar="POSITION",
        help="latest | offsets:PARTITION:OFFSET,...: a bounded replay that ends by itself "
        "(rebuilds counts; samples no walks)",
    )
    restore = parser.add_mutually_exclusive_group()
    restore.add_argument("--from-savepoint", type=Path, metavar="PATH", help="restore state")
    restore.add_argument(
        "--from-checkpoint",
        metavar="latest|PATH",
        help="restore from a retained checkpoint: the newest under flink.checkpoint_dir, or PATH",
    )


def _job(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.job.positions import parse_start, parse_until

    start = parse_start(args.start)
    until = parse_until(args.until) if args.until else None
    from streaming.job.environment import flink_log_dir  # PyFlink: after the cheap checks
    from streaming.job.run import latest_checkpoint, refuse_routed_node2vec, run_job

    refuse_routed_node2vec(settings)
    if until is not None and (args.from_checkpoint or args.from_savepoint):
        raise ConfigError(
            "--until cannot be combined with a restore: the pinned Flink Kafka connector never "
            "ends a restored bounded source (FLINK-31006), and a bounded replay's checkpoint "
            "does not restore into a live job. Run the replay again from earliest with a new "
            "flink.checkpoint_dir; a live job's checkpoints restore without --until"
        )
    restore = args.from_savepoint
    if args.from_checkpoint == "latest":
        restore = latest_checkpoint(settings.checkpoint_dir)
    elif args.from_checkpoint:
        restore = Path(args.from_checkpoint)
    if restore is not None:
        _require_restorable(restore)
    _require_kafka(settings)
    log_dir = flink_log_dir(settings)
    print(
        f"job: {settings.kafka.topics.ratings} at {settings.kafka.bootstrap_servers} from "
        f"{args.start}{f' until {args.until}' if until else ''}, parallelism "
        f"{settings.flink.parallelism}, {settings.flink.state_backend} state, checkpoints in "
        f"{settings.checkpoint_dir}{f', restoring {restore}' if restore else ''}; Flink's log "
        f"in {log_dir or 'the log directory of the cluster'}",
        flush=True,
    )
    seconds = run_job(settings, start, until, restore)
    if seconds is None:
        print("job: submitted detached; it runs on in the cluster", flush=True)
    else:
        print(f"job: finished after {seconds:.1f}s of running", flush=True)
    return 0


def _require_restorable(path: Path) -> None:
    """Flink restores from a checkpoint or savepoint directory (or its _metadata file); without
    one it fails only after starting, with a long Java trace."""
    metadata = path if path.name == "_metadata" else path / "_metadata"
    if not metadata.is_file():
        raise ConfigError(
            f"{path} is no checkpoint or savepoint ({metadata} does not exist): give a chk-N or "
            "savepoint directory, or --from-checkpoint latest"
        )


def _trainer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cycles", type=int, help="stop after this many published versions (default: run on)"
    )


def _trainer(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.trainer import Trainer

    _require_kafka(settings)
    Trainer(settings, report=lambda line: print(line, flush=True)).run(cycles=args.cycles)
    return 0


def _similar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("item", type=int, help="item id")
    _table_arguments(parser, "neighbours")


def _recommend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", type=int, help="user id")
    _table_arguments(parser, "items")
    parser.add_argument(
        "--include-seen", action="store_true", help="keep the user's recent items in the list"
    )


def _table_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-k", type=int, default=10, help=f"how many {what}")
    parser.add_argument(
        "--labels",
        type=Path,
        help="movies.csv, items.csv or a ratings file next to one: show names of items",
    )


def _current_view(
    settings: Settings, args: argparse.Namespace
) -> tuple[VersionView, dict[str, Any]]:
    """The current version (pinned) and its meta, after its one-line summary is printed."""
    from streaming.store import EmbeddingClient

    if args.k < 1:
        raise ConfigError(f"-k {args.k}: ask for at least 1 item")
    view = EmbeddingClient.from_settings(settings.redis).current()
    meta = view.meta()
    users = f", {meta['users']:,} users" if "users" in meta else ""
    print(
        f"version {view.version}: {meta['count']:,} items (dim {meta['dim']}, "
        f"{meta['cold_count']:,} cold){users}, published "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(meta['created_at']))}"
    )
    return view, meta


def _print_items(found: list[tuple[int, float]], cold: set[int], labels: dict[int, str]) -> None:
    print(f"{'rank':>4}  {'cosine':>6}  {'item':>8}  label")
    for rank, (item, score) in enumerate(found, 1):
        flag = "  (cold)" if item in cold else ""
        print(f"{rank:>4}  {score:6.3f}  {item:>8}  {labels.get(item, '')[:60]}{flag}")


def _similar(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.embeddings.labels import item_labels

    labels = item_labels(args.labels) if args.labels else {}
    view, meta = _current_view(settings, args)
    found = view.similar(args.item, args.k)
    if not found:
        raise StoreError(
            f"item {args.item} has no vector in version {view.version} ({meta['count']:,} "
            "items): give an item id that occurs in the ratings, or wait for a newer version"
        )
    cold = view.cold([args.item, *(item for item, _ in found)])
    mark = " (cold)" if args.item in cold else ""
    print(f"nearest to {args.item}{mark}  {labels.get(args.item, '')}")
    _print_items(found, cold, labels)
    return 0


def _recommend(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.embeddings.labels import item_labels

    labels = item_labels(args.labels) if args.labels else {}
    view, meta = _current_view(settings, args)
    found = view.recommend(args.user, args.k, exclude_seen=not args.include_seen)
    if not found:
        raise StoreError(
            f"user {args.user} has no vector in version {view.version} "
            f"({meta.get('users', 0):,} users): give a user with a high rating of an item the "
            "version has (users.enabled must be on for the job and the trainer)"
        )
    recent = view.user_items(args.user)
    print(f"user {args.user}'s recent items, newest last:")
    for item in recent:
        print(f"{'':>14}  {item:>8}  {labels.get(item, '')[:60]}")
    print(f"nearest to user {args.user}'s vector" + ("" if args.include_seen else ", unseen"))
    _print_items(found, view.cold([item for item, _ in found]), labels)
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from batch.commands import add_spec_arguments
    from batch.synthetic import SyntheticSpec
    from streaming.rating_files import FORMATS

    parser.add_argument("--ratings", type=Path, help="stream this file (default: synthetic data)")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="format of --ratings")
    add_spec_arguments(
        parser.add_argument_group("synthetic data (without --ratings)"),
        SyntheticSpec(events=200_000, users=5_000, items=2_000, communities=20),
    )
    parser.add_argument(
        "--rate", type=float, default=4_000, help="events per second sent (0: as fast as possible)"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep streaming and print new versions until Ctrl-C"
    )
    parser.add_argument("--plot", type=Path, help="where the PNG goes (default: the run directory)")
    parser.add_argument(
        "--wait-s", type=float, default=300, help="give up (and say why) after waiting this long"
    )


def _demo(_: Settings, args: argparse.Namespace) -> int:
    from batch.commands import spec_from_arguments
    from streaming.demo import DemoOptions, run_demo

    options = DemoOptions(
        ratings=args.ratings,
        format=args.format,
        synthetic=spec_from_arguments(args),
        rate=args.rate or None,
        follow=args.follow,
        plot=args.plot,
        wait_s=args.wait_s,
    )
    run_demo(args.config, args.assignments, options, lambda line: print(line, flush=True))
    return 0


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("walkstream.png"), help="PNG to write")
    parser.add_argument(
        "--labels", type=Path, help="movies.csv or items.csv (or a ratings file next to one)"
    )


def _plot(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.embeddings.labels import item_groups
    from streaming.plot import TimelinePoint, draw, version_embeddings
    from streaming.store import EmbeddingClient

    client = EmbeddingClient.from_settings(settings.redis)
    view = client.current()
    embeddings = version_embeddings(view)
    history = client.history()
    began = history[0][2] if history else 0.0
    timeline = [
        TimelinePoint(seconds=created - began, version=version, items=count)
        for version, count, created in history
    ]
    groups = item_groups(args.labels) if args.labels else {}
    out = draw(args.out, embeddings, groups, timeline, f"walkstream version {view.version}")
    print(f"plot: {len(embeddings):,} items of version {view.version} -> {out}")
    return 0


class _Command(NamedTuple):
    run: Callable[[Settings, argparse.Namespace], int]
    summary: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


_COMMANDS: dict[str, _Command] = {
    "setup": _Command(
        _setup, "install the JVM jars and Redis this machine lacks (fast when current)"
    ),
    "up": _Command(_up, "start local Kafka and Redis on loopback and wait until they answer"),
    "down": _Command(_down, "stop the local services that `up` started"),
    "status": _Command(_status, "show which local services run and answer (exit 1 if any is down)"),
    "config": _Command(_config, "print the effective settings (secrets hidden)"),
    "synth": _Command(
        _synth, "write a synthetic ratings data set with planted communities", _synth_arguments
    ),
    "produce": _Command(
        _produce, "send a ratings file to Kafka in event-time order", _produce_arguments
    ),
    "job": _Command(
        _job, "run the streaming job (local mini-cluster; Ctrl-C stops it)", _job_arguments
    ),
    "batch": _Command(
        _batch, "embed the items of a ratings file (Item2vec / DeepWalk)", _batch_arguments
    ),
    "eval": _Command(
        _eval, "compare configurations on a next-item temporal hold-out", _eval_arguments
    ),
    "trainer": _Command(
        _trainer,
        "retrain Word2Vec from the samples topic and publish versions to Redis (Ctrl-C stops)",
        _trainer_arguments,
    ),
    "similar": _Command(
        _similar, "print the nearest items of the current version in Redis", _similar_arguments
    ),
    "recommend": _Command(
        _recommend,
        "print the items nearest to a user's vector in the current version in Redis",
        _recommend_arguments,
    ),
    "plot": _Command(
        _plot, "draw the current embeddings and the version history into a PNG", _plot_arguments
    ),
    "demo": _Command(
        _demo,
        "run everything on the local stack: stream data, train, publish, show results",
        _demo_arguments,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walkstream",
        description="Streaming, incremental item embeddings: Kafka -> PyFlink -> gensim -> Redis.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help=f"TOML settings file [env {ENV_PREFIX}CONFIG]")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one setting (repeatable), e.g. --set flink.parallelism=2",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.summary,
            description=command.summary,
            epilog=_EPILOG,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if command.arguments is not None:
            command.arguments(sub)
    return parser


def _service_errors() -> tuple[type[Exception], ...]:
    """Library errors that mean Kafka or Redis cannot be used as configured (down, wrong
    address, refused credentials), not a bug here. Imported only when an error is handled."""
    import redis
    from confluent_kafka import KafkaException
    from kafka.errors import (
        AuthorizationError,
        KafkaConnectionError,
        KafkaTimeoutError,
        SaslAuthenticationFailedError,
    )

    return (
        redis.ConnectionError,  # also a refused password (AuthenticationError)
        redis.TimeoutError,
        KafkaException,
        KafkaConnectionError,
        KafkaTimeoutError,  # kafka-python's "Unable to bootstrap from ..."
        AuthorizationError,
        SaslAuthenticationFailedError,
    )


def _service_problem(exc: Exception) -> str:
    import redis

    detail = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, redis.RedisError):
        return (
            f"cannot use Redis ({detail}): check that it runs (walkstream status) and the "
            "redis.* settings (url, password)"
        )
    return (
        f"cannot use Kafka ({detail}): check that it runs (walkstream status) and the kafka.* "
        "settings (bootstrap_servers, security)"
    )


def _stdout_closed() -> bool:
    """True when the reader of our standard output has gone, as `head` does after its lines."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):  # not a real file descriptor (captured, or closed)
        return False
    return any(events & select.POLLERR for _, events in poller.poll(0))


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake or an unreachable service ends in one line on stderr
    naming what to fix (exit 2); anything else is a bug and keeps its traceback."""
    args = _parser().parse_args(argv)
    command = args.command

    def fail(message: str) -> int:
        print(f"walkstream {command}: error: {message}", file=sys.stderr)
        return 2

    try:
        settings = load_settings(args.config, parse_assignments(args.assignments))
        code = _COMMANDS[command].run(settings, args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except WalkstreamError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"walkstream {command}: interrupted", file=sys.stderr)
        return _INTERRUPTED
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's, not our output's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _READER_GONE
    except _service_errors() as exc:
        return fail(_service_problem(exc))
    except OSError as exc:
        if exc.filename is None:
            raise
        return fail(f"{exc.filename}: {exc.strerror}: check the path")


if __name__ == "__main__":
    sys.exit(main())
