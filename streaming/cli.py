"""The `walkstream` command: one subcommand per step of running the system."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streaming.config import ENV_PREFIX, Settings, load_settings, parse_assignments
from streaming.errors import WalkstreamError
from streaming.runtime import LocalStack, install_runtime

__all__ = ["main"]

_EPILOG = f"""\
settings: defaults < TOML file (--config or {ENV_PREFIX}CONFIG) < environment
({ENV_PREFIX}SECTION__FIELD, e.g. {ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS) < --set SECTION.FIELD=VALUE.
`walkstream config` prints the effective settings.
"""


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


_COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "setup": (_setup, "install the JVM jars and Redis this machine lacks (fast when current)"),
    "up": (_up, "start local Kafka and Redis on loopback and wait until they answer"),
    "down": (_down, "stop the local services that `up` started"),
    "status": (_status, "show which local services run and answer (exit 1 if any does not)"),
    "config": (_config, "print the effective settings (secrets hidden)"),
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
    for name, (_, summary) in _COMMANDS.items():
        commands.add_parser(name, help=summary, description=summary, epilog=_EPILOG)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, parse_assignments(args.assignments))
        run, _ = _COMMANDS[args.command]
        return run(settings, args)
    except WalkstreamError as exc:
        print(f"walkstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
