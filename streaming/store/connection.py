"""Redis connections built from settings, so credentials come only from config."""

import redis

from streaming.config import RedisSettings

__all__ = ["connect"]


def connect(settings: RedisSettings, timeout_s: float | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        settings.url,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
