"""Redis connections built from settings, so credentials and TLS come only from config.

Every walkstream client connects through `connect`: the password is redis.password, else the
contents of redis.password_file (the local stack's generated password, see
streaming.config.Settings), else none.
"""

from __future__ import annotations

import ssl
from typing import Any

import redis

from streaming.config import RedisSettings
from streaming.errors import StoreError

__all__ = ["connect", "redis_password"]


class _TrustedSSLConnection(redis.SSLConnection):
    """A TLS connection whose certificate failure says which setting to fix."""

    def _error_message(self, exception: BaseException) -> str:
        if isinstance(exception, ssl.SSLCertVerificationError):
            return (
                f"Redis at {self.host}:{self.port} presented a TLS certificate walkstream does "
                f"not trust ({exception.verify_message}): set redis.ssl_cafile to the CA "
                "certificate that signed the server's"
            )
        return str(super()._error_message(exception))  # type: ignore[no-untyped-call]


def redis_password(settings: RedisSettings) -> str | None:
    """redis.password, else the first line of redis.password_file if it exists, else None."""
    if settings.password is not None:
        return settings.password.get_secret_value()
    if settings.password_file is None:
        return None
    try:
        return settings.password_file.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(
            f"cannot read redis.password_file {settings.password_file} ({exc.strerror}): "
            "make it readable by this user, or set redis.password"
        ) from None


def connect(settings: RedisSettings, timeout_s: float | None = None) -> redis.Redis:
    tls: dict[str, Any] = {}
    if settings.url.startswith("rediss://"):
        tls = {
            "connection_class": _TrustedSSLConnection,
            "ssl_ca_certs": str(settings.ssl_cafile) if settings.ssl_cafile else None,
            "ssl_certfile": str(settings.ssl_certfile) if settings.ssl_certfile else None,
            "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            "ssl_check_hostname": True,
        }
    return redis.Redis.from_url(
        settings.url,
        username=settings.username,
        password=redis_password(settings),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **tls,
    )
