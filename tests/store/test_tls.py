"""The store over TLS: a TLS-only local Redis (its own CA), reached with rediss:// and the CA."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from streaming.config import Settings
from streaming.runtime.services import RedisServer
from streaming.store import EmbeddingClient, connect
from streaming.store.versions import publish_version
from tests.ports import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Authority:
    """A certificate authority, and a server certificate for 127.0.0.1 that it signed."""

    ca: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _authority(directory: Path) -> Authority:
    directory.mkdir()
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = (
        directory / "server.pem",
        directory / "server.key",
        directory / "server.csr",
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", f"/CN=walkstream test CA {directory.name}")  # fmt: skip
    _openssl("req", *ec, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1")
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extensions)  # fmt: skip
    return Authority(ca, cert, key)


class TlsRedis(RedisServer):
    """The local Redis with a TLS port instead of its plain one."""

    def __init__(self, settings: Settings, authority: Authority) -> None:
        super().__init__(settings)
        self.authority = authority

    def prepare(self) -> list[str]:
        tls_port = str(self.ports["redis.url"])
        return [
            *super().prepare(),
            "--port", "0",
            "--tls-port", tls_port,
            "--tls-cert-file", str(self.authority.server_cert),
            "--tls-key-file", str(self.authority.server_key),
            "--tls-ca-cert-file", str(self.authority.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(
    stack_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Authority]]:
    authority = _authority(tmp_path_factory.mktemp("tls") / "authority")
    settings = stack_settings(
        redis={"url": f"rediss://127.0.0.1:{free_port()}/0", "ssl_cafile": str(authority.ca)}
    )
    server = TlsRedis(settings, authority)
    server.start(report=lambda _: None)
    yield settings, authority
    server.stop(report=lambda _: None)


def test_publish_and_read_over_tls(tls_redis: tuple[Settings, Authority], unique: str) -> None:
    settings, _ = tls_redis
    client = connect(settings.redis)
    assert client.connection_pool.connection_class.__name__.endswith("SSLConnection")
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    publish_version(client, unique, [7, 8, 9], vectors, [], {"over": "tls"}, grace_s=30)

    reader = EmbeddingClient.from_settings(settings.redis.model_copy(update={"key_prefix": unique}))
    got = reader.vectors([7, 9])
    reader.close()
    assert sorted(got) == [7, 9]
    np.testing.assert_array_equal(got[9], vectors[2])


def test_the_plain_protocol_gets_no_answer(tls_redis: tuple[Settings, Authority]) -> None:
    settings, _ = tls_redis
    plain = settings.redis.url.replace("rediss://", "redis://")
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=5, socket_connect_timeout=5).ping()


def test_a_wrong_ca_fails_with_a_one_line_error_naming_the_setting(
    tls_redis: tuple[Settings, Authority], tmp_path: Path
) -> None:
    settings, _ = tls_redis
    stranger = _authority(tmp_path / "stranger")
    wrong = settings.redis.model_copy(update={"ssl_cafile": stranger.ca})
    with pytest.raises(redis.ConnectionError) as error:
        connect(wrong, timeout_s=5).ping()
    message = str(error.value)
    host, port = settings.redis.host_port
    assert f"Redis at {host}:{port} presented a TLS certificate" in message
    assert "redis.ssl_cafile" in message
    assert "\n" not in message
