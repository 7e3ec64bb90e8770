"""The Redis layout of embedding versions, and how a version is published.

Every key starts with the configured prefix `P`:

- `P:v:{V}:vectors`  hash: item id (decimal string) -> float32 little-endian bytes
- `P:v:{V}:cold`     set: item ids whose vector is a neighbour average, not trained
- `P:v:{V}:meta`     hash: dim, count, cold_count, created_at, and JSON `info` (seed,
                     parameters, Kafka offsets or input file it covers)
- `P:current`        string: the version readers should use
- `P:versions`       stream: one entry per published version (version, count, created_at)
- `P:version-seq`    counter that numbers versions

A version is written completely and verified (its hash length equals its count) before
`P:current` switches to it in one SET, so a reader that resolves `P:current` once and then
reads only that version's keys never mixes two models. The previous version stays readable
for `grace_s` seconds, then expires.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis

from streaming.errors import StoreError

__all__ = ["VersionKeys", "current_version", "publish_version"]

_BATCH = 2_000
_DTYPE = np.dtype("<f4")


@dataclass(frozen=True)
class VersionKeys:
    prefix: str

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:versions"

    @property
    def sequence(self) -> str:
        return f"{self.prefix}:version-seq"

    def vectors(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:vectors"

    def cold(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:cold"

    def meta(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def of_version(self, version: int) -> list[str]:
        return [self.vectors(version), self.cold(version), self.meta(version)]


def encode_vector(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=_DTYPE).tobytes()


def decode_vector(raw: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(raw, dtype=_DTYPE)


def current_version(client: redis.Redis, prefix: str) -> int | None:
    raw = cast(bytes | None, client.get(VersionKeys(prefix).current))
    return int(raw) if raw is not None else None


def publish_version(
    client: redis.Redis,
    prefix: str,
    item_ids: Iterable[int],
    vectors: npt.NDArray[np.float32],
    cold_ids: Iterable[int],
    info: Mapping[str, Any],
    grace_s: int = 3600,
) -> int:
    """Write a whole version, verify it, switch `current` to it; return its number."""
    keys = VersionKeys(prefix)
    ids = [str(int(item)) for item in item_ids]
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} item ids but {len(vectors)} vectors")
    matrix = np.ascontiguousarray(vectors, dtype=_DTYPE)
    version = cast(int, client.incr(keys.sequence))
    cold = [str(int(item)) for item in cold_ids]
    previous = current_version(client, prefix)

    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(ids), _BATCH):
            rows = matrix[start : start + _BATCH]
            mapping = {
                item: row.tobytes()
                for item, row in zip(ids[start : start + _BATCH], rows, strict=True)
            }
            pipe.hset(keys.vectors(version), mapping=mapping)
        for start in range(0, len(cold), _BATCH):
            pipe.sadd(keys.cold(version), *cold[start : start + _BATCH])
        created_at = time.time()
        pipe.hset(
            keys.meta(version),
            mapping={
                "dim": matrix.shape[1] if matrix.ndim == 2 else 0,
                "count": len(ids),
                "cold_count": len(cold),
                "created_at": f"{created_at:.3f}",
                "info": json.dumps(info, sort_keys=True),
            },
        )
        pipe.execute(raise_on_error=True)

    stored = cast(int, client.hlen(keys.vectors(version)))
    if stored != len(set(ids)):
        client.delete(*keys.of_version(version))
        raise StoreError(
            f"version {version} has {stored} vectors in Redis, expected {len(set(ids))}; "
            "not published (is Redis evicting keys? check maxmemory-policy)"
        )
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.current, version)
        pipe.xadd(
            keys.stream,
            {"version": version, "count": len(ids), "created_at": f"{created_at:.3f}"},
            maxlen=10_000,
            approximate=True,
        )
        if previous is not None:
            for key in keys.of_version(previous):
                pipe.expire(key, grace_s)
        pipe.execute(raise_on_error=True)
    return version
