"""A user's mistake ends `walkstream` with one line naming what to fix, never a traceback.

Each case runs the real command in a subprocess with a private runtime home, Kafka and Redis
pointed at loopback ports nothing listens on (or at a socket the test holds), so nothing real
is touched and no case waits for a client's retries.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streaming.config import ENV_PREFIX, load_settings
from streaming.runtime.services import RedisServer
from streaming.store.connection import connect
from streaming.store.versions import publish_version, write_user_items, write_users
from tests.ports import free_port

_ROOT = Path(__file__).resolve().parents[1]
_TIMEOUT_S = 120
_GOOD = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,4.5,101\n2,10,5.0,102\n"


def _environment(home: Path, kafka: str, redis: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    return env | {
        f"{ENV_PREFIX}RUNTIME__HOME": str(home),
        f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": kafka,
        f"{ENV_PREFIX}REDIS__URL": redis,
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Kafka and Redis at ports nothing listens on."""
    return _environment(
        tmp_path / "home", f"127.0.0.1:{free_port()}", f"redis://127.0.0.1:{free_port()}/0"
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that takes connections and never answers: a service that hangs, or
    a Kafka that passes the reachability check."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(_TIMEOUT_S)
        yield server


def _port(server: socket.socket) -> int:
    return int(server.getsockname()[1])


def walkstream(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming.cli", *args],
        env=env | {"PYTHONPATH": str(_ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
    )


def assert_clean_error(
    result: subprocess.CompletedProcess[str], command: str, names: str, max_lines: int = 1
) -> None:
    """Exit 2, no traceback, at most `max_lines` on stderr: `walkstream COMMAND: error: ...`."""
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    assert result.returncode == 2, (result.returncode, stderr)
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, stderr
    assert lines[0].startswith(f"walkstream {command}: error: "), stderr
    assert names in stderr, stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A good ratings file, a binary file, a u.data file and one without a valid row."""
    paths = {
        "good": tmp_path / "ratings.csv",
        "binary": tmp_path / "random.bin",
        "udata": tmp_path / "u.data",
        "invalid": tmp_path / "invalid.csv",
    }
    paths["good"].write_text(_GOOD)
    paths["binary"].write_bytes(np.random.default_rng(7).bytes(4096))
    paths["udata"].write_text("1\t10\t4\t100\n1\t11\t5\t101\n")
    paths["invalid"].write_text("1,10,9,100\n1,11\n-1,10,4,100\n")
    return paths


# (arguments with {file} placeholders, command, what the message must name, lines allowed)
CASES = [
    (["job", "--from", "timestamp:²"], "job", "--from 'timestamp:²': use earliest", 1),
    (["job", "--until", "soon"], "job", "--until 'soon': use latest", 1),
    (["--config", "{binary}", "config"], "config", "is not valid TOML", 1),
    (["--config", "{missing}", "config"], "config", "does not exist", 1),
    (["--set", "flink.parallelism=0", "config"], "config", "flink.parallelism", 3),
    (["--set", "nonsense", "config"], "config", "SECTION.FIELD=VALUE", 1),
    (["job", "--from-checkpoint", "/nonexistent/chk-1"], "job", "no checkpoint or savepoint", 1),
    (["job", "--from-checkpoint", "latest"], "job", "no completed checkpoint", 1),
    (["job"], "job", "cannot reach Kafka", 1),
    (
        ["--set", "stream.walk_stage=routed", "--set", "walks.q=0.5", "job"],
        "job",
        "run the job with stream.walk_stage=replicated, or walks.p=1 and walks.q=1",
        1,
    ),
    (["--set", "stream.hop_batch_ms=200", "config"], "config", "needs walk_stage=routed", 3),
    (
        ["--set", "stream.walk_stage=routed", "--set", "stream.walk_tasks=2", "config"],
        "config",
        "needs walk_stage=replicated",
        3,
    ),
    (["trainer"], "trainer", "cannot reach Kafka", 1),
    (["produce", "{good}"], "produce", "kafka.bootstrap_servers", 1),
    (["batch", "--ratings", "{binary}", "--out", "{out}"], "batch", "check --format", 1),
    (["batch", "--ratings", "{udata}", "--out", "{out}"], "batch", "check --format", 1),
    (["batch", "--ratings", "{missing}", "--out", "{out}"], "batch", "does not exist", 1),
    (["batch", "--ratings", "{good}", "--out", "{good}"], "batch", "File exists", 1),
    (["eval", "--ratings", "{good}"], "eval", "no next-item case", 1),
    (["similar", "5"], "similar", "cannot use Redis", 1),
    (["similar", "5", "-k", "0"], "similar", "at least 1", 1),
    (["recommend", "5"], "recommend", "cannot use Redis", 1),
    (["recommend", "5", "-k", "0"], "recommend", "at least 1", 1),
    (["similar", "5", "--labels", "{missing}"], "similar", "does not exist", 1),
    (["plot"], "plot", "redis.* settings", 1),
]


@pytest.mark.parametrize(
    ("args", "command", "names", "max_lines"), CASES, ids=[" ".join(c[0]) for c in CASES]
)
def test_a_mistake_is_one_line_naming_what_to_fix(
    args: list[str],
    command: str,
    names: str,
    max_lines: int,
    env: dict[str, str],
    files: dict[str, Path],
    tmp_path: Path,
) -> None:
    paths = {name: str(path) for name, path in files.items()}
    paths |= {"missing": str(tmp_path / "missing.csv"), "out": str(tmp_path / "out")}
    result = walkstream([arg.format(**paths) for arg in args], env, tmp_path)
    assert_clean_error(result, command, names, max_lines)


def test_redis_at_a_closed_port_named_by_set(env: dict[str, str], tmp_path: Path) -> None:
    result = walkstream(["--set", "redis.url=redis://127.0.0.1:1/0", "similar", "5"], env, tmp_path)
    assert_clean_error(result, "similar", "127.0.0.1:1")


def test_produce_of_a_file_without_a_valid_row_says_why_each_was_rejected(
    tmp_path: Path, files: dict[str, Path], listener: socket.socket
) -> None:
    env = _environment(
        tmp_path / "home", f"127.0.0.1:{_port(listener)}", f"redis://127.0.0.1:{free_port()}/0"
    )
    result = walkstream(["produce", str(files["invalid"])], env, tmp_path)
    assert_clean_error(
        result,
        "produce",
        "all 3 rows rejected as csv (rating_out_of_range 1, bad_row 1, bad_id 1; line 1:",
    )


def test_a_closed_output_pipe_ends_quietly(env: dict[str, str], tmp_path: Path) -> None:
    """`walkstream config | head`: the reader leaves early; exit 141 like any Unix tool."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "config"],
        env=env | {"PYTHONPATH": str(_ROOT)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(_TIMEOUT_S) == 141
    assert stderr == ""


def test_ctrl_c_is_one_line(tmp_path: Path, listener: socket.socket) -> None:
    """Ctrl-C while `similar` waits for a Redis that never answers."""
    env = _environment(
        tmp_path / "home", f"127.0.0.1:{free_port()}", f"redis://127.0.0.1:{_port(listener)}/0"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "similar", "5"],
        env=env | {"PYTHONPATH": str(_ROOT)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        connection, _ = listener.accept()  # the command now waits for Redis's answer
        with connection:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=_TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr == "walkstream similar: interrupted\n"


@pytest.mark.integration  # starts the installed redis-server
def test_similar_and_recommend_without_a_vector(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = load_settings().runtime.redis_server  # `make setup`'s, in the checkout
    if not installed.is_file():
        pytest.skip(f"no redis-server at {installed}: run `make setup`")
    env = env | {f"{ENV_PREFIX}RUNTIME__REDIS_SERVER": str(installed)}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    redis = RedisServer(settings)
    redis.start(report=lambda _: None)
    try:
        assert_clean_error(walkstream(["similar", "10"], env, tmp_path), "similar", "no embedding")
        vectors = np.eye(2, dtype=np.float32)
        publish_version(
            connect(settings.redis), settings.redis.key_prefix, [10, 11], vectors, [], {}
        )
        result = walkstream(["similar", "12"], env, tmp_path)
        assert_clean_error(result, "similar", "item 12 has no vector in version 1")
        found = walkstream(["similar", "10", "-k", "1"], env, tmp_path)
        assert found.returncode == 0, found.stderr
        assert "nearest to 10" in found.stdout
        result = walkstream(["recommend", "3"], env, tmp_path)
        assert_clean_error(result, "recommend", "user 3 has no vector in version 1")
        connection = connect(settings.redis)
        write_users(connection, settings.redis.key_prefix, 1, np.array([3]), vectors[:1])
        write_user_items(connection, settings.redis.key_prefix, np.array([3]), np.array([[10]]))
        found = walkstream(["recommend", "3", "-k", "1"], env, tmp_path)
        assert found.returncode == 0, found.stderr
        assert "nearest to user 3's vector, unseen" in found.stdout
        assert found.stdout.rstrip().endswith("11")  # 10, its only item, is left out
    finally:
        redis.stop(report=lambda _: None)
