"""The local stack against real processes: Kafka KRaft broker and Redis on free ports."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from pydantic import SecretStr

from streaming.cli import main
from streaming.config import Settings
from streaming.errors import RuntimeServiceError
from streaming.runtime import LocalStack
from streaming.runtime.services import RedisServer
from streaming.store import connect
from tests.kafka_records import read_topic, send_raw

pytestmark = pytest.mark.integration


def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    send_raw(settings, topic, records)


def _consume_all(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes]]:
    return [(key, value) for *_, key, value in read_topic(settings, topic)]


def _alive(pid: int | None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"user{i % 7}".encode(), json.dumps({"seq": i}).encode()) for i in range(n)]


def test_kafka_round_trip_keeps_per_key_order(local_stack: Settings, unique: str) -> None:
    sent = _records(500)
    _produce(local_stack, unique, sent)
    received = sorted(read_topic(local_stack, unique), key=lambda r: (r[0], r[1]))
    received_pairs = [(key, value) for *_, key, value in received]
    assert sorted(received_pairs) == sorted(sent)
    for key in {key for key, _ in sent}:
        assert [v for k, v in received_pairs if k == key] == [v for k, v in sent if k == key]


def test_redis_ping_set_get(local_stack: Settings, unique: str) -> None:
    client = connect(local_stack.redis)
    assert client.ping()
    client.set(f"{unique}:k", b"\x00\x01value")
    assert client.get(f"{unique}:k") == b"\x00\x01value"
    info = client.info("server")
    assert str(info["redis_version"]).startswith("8.")
    assert client.execute_command("VADD", f"{unique}:vs", "VALUES", 2, 1.0, 0.0, "a") == 1
    assert client.execute_command("VADD", f"{unique}:vs", "VALUES", 2, 0.0, 1.0, "b") == 1
    nearest = client.execute_command("VSIM", f"{unique}:vs", "VALUES", 2, 0.9, 0.1, "COUNT", 1)
    assert nearest == [b"a"]


def test_kafka_data_survives_down_and_up(stack_settings: Callable[..., Settings]) -> None:
    settings = stack_settings()
    stack = LocalStack(settings)
    try:
        stack.up(report=lambda _: None)
        sent = _records(200)
        _produce(settings, "durable", sent)
        pids = [status.pid for status in stack.status()]
        stack.down(report=lambda _: None)
        assert [status.state for status in stack.status()] == ["stopped", "stopped"]
        assert not any(_alive(pid) for pid in pids)
        stack.up(report=lambda _: None)
        assert sorted(_consume_all(settings, "durable")) == sorted(sent)
    finally:
        stack.down(report=lambda _: None)


def test_up_twice_is_harmless(local_stack: Settings) -> None:
    stack = LocalStack(local_stack)
    before = [status.pid for status in stack.status()]
    lines: list[str] = []
    statuses = stack.up(report=lines.append)
    assert [status.pid for status in statuses] == before
    assert all(status.answering for status in statuses)
    assert lines == [
        f"kafka: already running at {local_stack.kafka.bootstrap_servers}",
        f"redis: already running at 127.0.0.1:{local_stack.redis.host_port[1]}",
    ]


@pytest.mark.parametrize("service", ["kafka", "redis"])
def test_taken_port_gives_a_clear_error(
    stack_settings: Callable[..., Settings], service: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        if service == "kafka":
            settings = stack_settings(kafka={"bootstrap_servers": f"127.0.0.1:{port}"})
            setting = "kafka.bootstrap_servers"
        else:
            settings = stack_settings(redis={"url": f"redis://127.0.0.1:{port}/0"})
            setting = "redis.url"
        stack = LocalStack(settings)
        try:
            with pytest.raises(RuntimeServiceError) as error:
                stack.up(report=lambda _: None)
        finally:
            stack.down(report=lambda _: None)
    message = str(error.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert setting in message


def test_down_never_stops_a_process_it_did_not_start(
    stack_settings: Callable[..., Settings],
) -> None:
    settings = stack_settings()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        run = settings.runtime.state_dir / "run"
        run.mkdir(parents=True)
        # A PID file left behind, whose PID now belongs to someone else (different start time).
        (run / "kafka.pid").write_text(json.dumps({"pid": stranger.pid, "start_ticks": 1}))
        assert [status.state for status in LocalStack(settings).status()] == ["stopped", "stopped"]
        LocalStack(settings).down(report=lambda _: None)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_redis_password_and_acl_user(stack_settings: Callable[..., Settings]) -> None:
    settings = stack_settings(redis={"username": "walker", "password": "s3cret-pw"})
    server = RedisServer(settings)
    try:
        server.start(report=lambda _: None)
        assert connect(settings.redis).ping()
        anonymous = redis.Redis.from_url(settings.redis.url)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        conf = (settings.runtime.state_dir / "redis" / "redis.conf").stat()
        assert conf.st_mode & 0o077 == 0
    finally:
        server.stop(report=lambda _: None)


def test_local_redis_gets_a_generated_password_only_its_owner_can_read(
    stack_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = stack_settings()
    secret = settings.runtime.home / "secrets" / "redis-password"
    assert settings.redis.password is None
    assert settings.redis.password_file == secret
    server = RedisServer(settings)
    try:
        server.start(report=lambda _: None)
        password = secret.read_text().strip()
        assert len(password) >= 40
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.parent.stat().st_mode & 0o777 == 0o700
        assert connect(settings.redis).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(settings.redis.url).ping()
        explicit = settings.redis.model_copy(update={"password": SecretStr("not-it")})
        with pytest.raises(redis.AuthenticationError):
            connect(explicit).ping()  # an explicit redis.password wins over the file

        server.stop(report=lambda _: None)
        server.start(report=lambda _: None)
        assert secret.read_text().strip() == password
        assert connect(settings.redis).ping()

        flags = ["--set", f"runtime.home={settings.runtime.home}",
                 "--set", f"redis.url={settings.redis.url}"]  # fmt: skip
        assert main([*flags, "config"]) == 0
        shown = capsys.readouterr().out
        assert str(secret) in shown
        assert password not in shown
        assert password not in server.log.read_text()
    finally:
        server.stop(report=lambda _: None)


def test_cli_up_status_down(
    stack_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = stack_settings()
    flags = [
        "--set", f"runtime.home={settings.runtime.home}",
        "--set", f"runtime.jars_dir={settings.runtime.jars_dir}",
        "--set", f"runtime.redis_server={settings.runtime.redis_server}",
        "--set", f"runtime.kafka_controller_port={settings.runtime.kafka_controller_port}",
        "--set", f"kafka.bootstrap_servers={settings.kafka.bootstrap_servers}",
        "--set", f"redis.url={settings.redis.url}",
    ]  # fmt: skip
    try:
        assert main([*flags, "status"]) == 1
        assert main([*flags, "up"]) == 0
        out = capsys.readouterr().out
        assert f"kafka: ready at {settings.kafka.bootstrap_servers}" in out
        assert main([*flags, "status"]) == 0
        assert "running" in capsys.readouterr().out
    finally:
        assert main([*flags, "down"]) == 0
    assert main([*flags, "status"]) == 1
    assert capsys.readouterr().out.count("stopped") == 2


def test_storage_format_accepts_cluster_ids_that_look_like_options(
    stack_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random cluster id can start with "-": formatting must not read it as an option."""
    import uuid

    from streaming.runtime.services import KafkaBroker

    dash = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64url of 0xf8... starts with "-"
    monkeypatch.setattr(uuid, "uuid4", lambda: dash)
    broker = KafkaBroker(stack_settings())
    broker.state_dir.mkdir(parents=True)
    broker.prepare()
    meta = (broker.state_dir / "data" / "meta.properties").read_text()
    assert "cluster.id=-" in meta
