"""The Redis layout of embedding versions, and how a version is published.

Every key starts with the configured prefix `P`:

- `P:v:{V}:vectors`  hash: item id (decimal string) -> float32 little-endian bytes
- `P:v:{V}:cold`     set: item ids whose vector is a neighbour average, not trained
- `P:v:{V}:meta`     hash: dim, count, cold_count, created_at, JSON `info` (seed,
                     parameters, Kafka offsets or input file it covers), `index_count` and
                     `index_digest` (BLAKE2b of the index's two strings), and `vector_set` = `ready`
                     once `P:v:{V}:vset` holds every vector of the version
- `P:v:{V}:index`    string: HNSW graph of the version's vectors as written (usearch format,
                     see streaming.store.index), for readers to search in their process
- `P:v:{V}:index-rows` string: the item ids (int64) and unit vectors (float32) of the
                     graph's rows, little-endian, for exact re-ranking
- `P:v:{V}:added`    list: item ids added after the version was written (not in its index)
- `P:v:{V}:vset`     vector set (Redis >= 8) of the same vectors, for VSIM
- `P:v:{V}:users`    hash: user id (decimal string) -> float32 little-endian bytes, the user's
                     vector from this version's item vectors (streaming.embeddings.users);
                     meta `users` counts them when the version was written, `users_info`
                     (JSON) says how they were built
- `P:user-items`     hash: user id -> int64 little-endian bytes, the user's recent kept items,
                     oldest first (what their vector in the newest version averages)
- `P:current`        string: the version readers should use
- `P:versions`       stream: one entry per published version (version, count, created_at)
- `P:prepared`       stream: one entry per version written with its index, before its switch
                     (readers that preload load it then)
- `P:version-events` pub/sub channel: the version number, after each switch
- `P:version-seq`    counter that numbers versions

A version is written completely and verified (its hash length equals its count) before
`P:current` switches to it in one SET (until then its keys expire within an hour, so a
writer that dies mid-way leaves no garbage), so a reader that resolves `P:current` once and then
reads only that version's keys never mixes two models. The previous version stays readable
for `grace_s` seconds, then expires. Cold items may be added to the current version later
(`add_to_version`): a version only grows, and an item's vector never changes within it.
`publish_version` builds the index before the switch, so a version is searchable from the
moment it is current. The vector set (for VSIM from any language) is built after the switch
(HNSW inserts in Redis cost ~0.3 ms each, a hundred times the hash write), so readers use
VSIM only once `vector_set` is `ready`. User vectors are written into a version before its
switch too (`write_users`, called by `publish_version`'s `prepare`), and a user's entries
are replaced whenever their recent items change: a user's vector only ever averages item
vectors of the version it is stored in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis

from streaming.errors import StoreError
from streaming.store.index import BuiltIndex, build_index

__all__ = [
    "VersionKeys",
    "add_to_version",
    "announce_prepared",
    "build_vector_set",
    "count_users",
    "current_version",
    "decode_items",
    "decode_vector",
    "drop_all",
    "encode_vector",
    "has_users",
    "prepare_version",
    "publish_version",
    "restore_sequence",
    "supports_vector_sets",
    "switch_to",
    "write_index",
    "write_user_items",
    "write_users",
    "write_version",
]

_BATCH = 2_000
_UNPUBLISHED_TTL_S = 3_600
_DTYPE = np.dtype("<f4")
_ITEM_DTYPE = np.dtype("<i8")
_PIPELINE_ROWS = 100_000


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
    def prepared(self) -> str:
        return f"{self.prefix}:prepared"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:version-events"

    @property
    def sequence(self) -> str:
        return f"{self.prefix}:version-seq"

    def vectors(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:vectors"

    def cold(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:cold"

    def meta(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def vector_set(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:vset"

    def index(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:index"

    def index_rows(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:index-rows"

    def added(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:added"

    def users(self, version: int) -> str:
        return f"{self.prefix}:v:{version}:users"

    @property
    def user_items(self) -> str:
        return f"{self.prefix}:user-items"

    def of_version(self, version: int) -> list[str]:
        return [
            self.vectors(version),
            self.cold(version),
            self.meta(version),
            self.vector_set(version),
            self.index(version),
            self.index_rows(version),
            self.added(version),
            self.users(version),
        ]


def encode_vector(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=_DTYPE).tobytes()


def decode_vector(raw: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(raw, dtype=_DTYPE)


def decode_items(raw: bytes) -> npt.NDArray[np.int64]:
    return np.frombuffer(raw, dtype=_ITEM_DTYPE)


def current_version(client: redis.Redis, prefix: str) -> int | None:
    raw = cast(bytes | None, client.get(VersionKeys(prefix).current))
    return int(raw) if raw is not None else None


def drop_all(client: redis.Redis, prefix: str) -> int:
    """Delete every key under `prefix` (a namespace's reset); return how many there were."""
    dropped = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1_000):
        batch.append(key)
        if len(batch) == _BATCH:
            dropped += cast(int, client.unlink(*batch))
            batch.clear()
    if batch:
        dropped += cast(int, client.unlink(*batch))
    return dropped


def publish_version(
    client: redis.Redis,
    prefix: str,
    item_ids: Iterable[int],
    vectors: npt.NDArray[np.float32],
    cold_ids: Iterable[int],
    info: Mapping[str, Any],
    grace_s: int = 3600,
    preload_s: float = 0.0,
    prepare: Callable[[int], object] | None = None,
) -> int:
    """Write a whole version with its index (`prepare_version`), wait `preload_s` (readers
    that preload load it meanwhile), switch `current` to it; return its number."""
    version = prepare_version(client, prefix, item_ids, vectors, cold_ids, info, prepare)
    if preload_s > 0:
        time.sleep(preload_s)  # the readers' window to load the version, not a retry
    switch_to(client, prefix, version, grace_s)
    return version


def prepare_version(
    client: redis.Redis,
    prefix: str,
    item_ids: Iterable[int],
    vectors: npt.NDArray[np.float32],
    cold_ids: Iterable[int],
    info: Mapping[str, Any],
    prepare: Callable[[int], object] | None = None,
) -> int:
    """Write a whole version and its index, verify it, call `prepare` with its number (to
    write more of it, such as its users, before anyone reads it) and announce it as prepared;
    return its number. Readers see it once `switch_to` makes it current."""
    ids = np.fromiter((int(item) for item in item_ids), dtype=np.int64)
    version = write_version(client, prefix, ids, vectors, cold_ids, info)
    write_index(client, prefix, version, build_index(ids, vectors))
    if prepare is not None:
        prepare(version)
    announce_prepared(client, prefix, version)
    return version


def announce_prepared(client: redis.Redis, prefix: str, version: int) -> None:
    """Tell preloading readers that a written version (with its index) will become current."""
    client.xadd(VersionKeys(prefix).prepared, {"version": version}, maxlen=100, approximate=True)


def write_index(client: redis.Redis, prefix: str, version: int, built: BuiltIndex) -> None:
    """Store the index of a written, not yet current version (built from the same rows as
    `write_version` wrote), with its item count and digest in the version's meta."""
    keys = VersionKeys(prefix)
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.index(version), built.graph, ex=_UNPUBLISHED_TTL_S)
        pipe.set(keys.index_rows(version), built.rows, ex=_UNPUBLISHED_TTL_S)
        pipe.hset(
            keys.meta(version),
            mapping={"index_count": built.count, "index_digest": built.digest},
        )
        pipe.execute(raise_on_error=True)


def write_version(
    client: redis.Redis,
    prefix: str,
    item_ids: Iterable[int],
    vectors: npt.NDArray[np.float32],
    cold_ids: Iterable[int],
    info: Mapping[str, Any],
) -> int:
    """Write a version under a new number and verify it is whole; readers do not see it yet."""
    keys = VersionKeys(prefix)
    rows = _rows(item_ids, vectors)
    if not rows:
        raise ValueError("an empty version would replace a model with nothing; not published")
    version = cast(int, client.incr(keys.sequence))
    cold = [str(int(item)) for item in cold_ids]
    with client.pipeline(transaction=False) as pipe:
        # Until the switch every key carries a TTL: a writer that dies mid-way leaves
        # nothing behind for long. switch_to makes them persistent.
        for start in range(0, len(rows), _BATCH):
            pipe.hset(keys.vectors(version), mapping=dict(rows[start : start + _BATCH]))
            pipe.expire(keys.vectors(version), _UNPUBLISHED_TTL_S)
        for start in range(0, len(cold), _BATCH):
            pipe.sadd(keys.cold(version), *cold[start : start + _BATCH])
            pipe.expire(keys.cold(version), _UNPUBLISHED_TTL_S)
        pipe.hset(
            keys.meta(version),
            mapping={
                "dim": len(rows[0][1]) // _DTYPE.itemsize,
                "count": len(rows),
                "cold_count": len(cold),
                "created_at": f"{time.time():.3f}",
                "info": json.dumps(info, sort_keys=True),
            },
        )
        pipe.expire(keys.meta(version), _UNPUBLISHED_TTL_S)
        pipe.hlen(keys.vectors(version))
        *_, stored = pipe.execute(raise_on_error=True)
    if stored != len(rows):
        client.delete(*keys.of_version(version))
        raise StoreError(
            f"version {version} has {stored} vectors in Redis, expected {len(rows)}; "
            "not published (is Redis evicting keys? check maxmemory-policy)"
        )
    return version


def switch_to(client: redis.Redis, prefix: str, version: int, grace_s: int = 3600) -> None:
    """Make a written version current in one MULTI; the previous one expires after `grace_s`."""
    keys = VersionKeys(prefix)
    with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.current)
        pipe.hmget(keys.meta(version), ["count", "created_at"])
        previous, (count, created_at) = pipe.execute(raise_on_error=True)
    if count is None:
        raise StoreError(f"version {version} was never written (or has expired): not switching")
    with client.pipeline(transaction=True) as pipe:
        for key in keys.of_version(version):
            pipe.persist(key)
        pipe.set(keys.current, version)
        pipe.xadd(
            keys.stream,
            {"version": version, "count": count, "created_at": created_at},
            maxlen=10_000,
            approximate=True,
        )
        if previous is not None and int(previous) != version:
            for key in keys.of_version(int(previous)):
                pipe.expire(key, grace_s)
        pipe.publish(keys.channel, version)
        pipe.execute(raise_on_error=True)


def write_users(
    client: redis.Redis,
    prefix: str,
    version: int,
    user_ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    gone: Iterable[int] = (),
) -> bool:
    """Store users' vectors (row i of `vectors` for `user_ids[i]`) in a written version and
    drop the users in `gone` from it.

    A version that is gone (expired, or never written) gets nothing: returns False. The
    users' hash takes its version's expiry in the same atomic step as each write, so it
    expires with a version that is not persistent (not yet switched to, or superseded), and
    a write racing the switch cannot leave it expiring in a current one.
    """
    keys = VersionKeys(prefix)
    if len(user_ids) != len(vectors):
        raise ValueError(f"{len(user_ids)} users but {len(vectors)} vectors")
    if cast(int, client.exists(keys.vectors(version))) == 0:
        return False
    return _write_rows(
        client, keys.users(version), user_ids, vectors, _DTYPE, gone, like=keys.vectors(version)
    )


def count_users(
    client: redis.Redis, prefix: str, version: int, info: Mapping[str, Any]
) -> int | None:
    """Record in a version's meta how many users it holds now (`users`) and how their vectors
    were built (`users_info`, JSON); return the count, or None if the version is gone."""
    keys = VersionKeys(prefix)
    with client.pipeline(transaction=True) as pipe:
        pipe.exists(keys.meta(version))
        pipe.hlen(keys.users(version))
        exists, count = pipe.execute(raise_on_error=True)
    if not exists:
        return None
    fields = {"users": count, "users_info": json.dumps(info, sort_keys=True)}
    client.hset(keys.meta(version), mapping=fields)  # HSET keeps the meta's expiry
    return int(count)


def has_users(client: redis.Redis, prefix: str, version: int) -> bool:
    """Whether a version's users were written (its meta counts them)."""
    return bool(client.hexists(VersionKeys(prefix).meta(version), "users"))


def write_user_items(
    client: redis.Redis,
    prefix: str,
    user_ids: npt.NDArray[np.int64],
    recent: npt.NDArray[np.int64],
    gone: Iterable[int] = (),
) -> None:
    """Store users' recent items (right-aligned rows, `streaming.embeddings.users.padded`;
    the padding is not stored) in `P:user-items`, and drop the users in `gone`."""
    if len(user_ids) != len(recent):
        raise ValueError(f"{len(user_ids)} users but {len(recent)} rows of items")
    key = VersionKeys(prefix).user_items
    _write_rows(client, key, user_ids, recent, _ITEM_DTYPE, gone, trim_negative=True)


# KEYS[1] the key whose expiry to follow, KEYS[2] the key that follows it: gone with it,
# else its expiry (or none) copied. Returns 0 if KEYS[1] is gone.
_FOLLOW_EXPIRY = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then redis.call('DEL', KEYS[2]) return 0 end
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
return 1
"""


def _write_rows(
    client: redis.Redis,
    key: str,
    ids: npt.NDArray[np.int64],
    rows: npt.NDArray[Any],
    dtype: np.dtype[Any],
    gone: Iterable[int],
    trim_negative: bool = False,
    like: str | None = None,
) -> bool:
    """HSET id -> row bytes (without a row's leading negative padding with `trim_negative`),
    in bounded round trips, then HDEL `gone`. With `like`, each write also gives `key` the
    expiry of `like` atomically, and nothing is written once `like` is gone: returns False
    then. (Each batch is its own MULTI/EXEC of a native HSET and a script that only reads and
    copies the expiry: the rows never pass through Lua, which would double Redis' work per
    row, and no transaction holds Redis for more than one batch.)"""
    names = [str(int(user)) for user in ids]
    # One bytes object per matrix, sliced per row: a call per row would dominate.
    data = np.ascontiguousarray(rows, dtype=dtype).tobytes()
    width = rows.shape[1] * dtype.itemsize if len(rows) else 0
    skip = ((np.asarray(rows) < 0).sum(axis=1) if trim_negative else np.zeros(len(rows), int)) * (
        dtype.itemsize
    )
    follow = client.register_script(_FOLLOW_EXPIRY) if like is not None else None
    for chunk in range(0, len(names), _PIPELINE_ROWS):  # bounded client memory per round trip
        with client.pipeline(transaction=False) as pipe:
            for start in range(chunk, min(chunk + _PIPELINE_ROWS, len(names)), _BATCH):
                mapping = {
                    names[r]: data[r * width + int(skip[r]) : (r + 1) * width]
                    for r in range(start, min(start + _BATCH, len(names)))
                }
                if follow is None or like is None:
                    pipe.hset(key, mapping=mapping)
                else:
                    pipe.execute_command("MULTI")  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping=mapping)
                    follow(keys=[like, key], client=pipe)
                    pipe.execute_command("EXEC")  # type: ignore[no-untyped-call]
            replies = pipe.execute(raise_on_error=True)
        if follow is not None and not _all_followed(replies[3::4]):
            return False
    dropped = [str(int(user)) for user in gone]
    if dropped:
        with client.pipeline(transaction=False) as pipe:
            for start in range(0, len(dropped), _BATCH):
                pipe.hdel(key, *dropped[start : start + _BATCH])
            pipe.execute(raise_on_error=True)
    return True


def _all_followed(executed: list[Any]) -> bool:
    """Whether every MULTI/EXEC of `_write_rows` found its `like` key; an error inside one
    (the replies of EXEC are not raised by the pipeline) is raised."""
    followed = True
    for replies in executed:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        followed = followed and replies[-1] == 1
    return followed


def restore_sequence(client: redis.Redis, prefix: str, last_version: int) -> None:
    """After Redis lost its data, keep numbering after `last_version`, so version numbers
    that consumers saw never come back with different vectors."""
    client.set(VersionKeys(prefix).sequence, last_version, nx=True)


def _rows(item_ids: Iterable[int], vectors: npt.NDArray[np.float32]) -> list[tuple[str, bytes]]:
    ids = [str(int(item)) for item in item_ids]
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} item ids but {len(vectors)} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("item ids repeat: one vector per item")
    matrix = np.ascontiguousarray(vectors, dtype=_DTYPE)
    return list(zip(ids, (row.tobytes() for row in matrix), strict=True))


def add_to_version(
    client: redis.Redis,
    prefix: str,
    version: int,
    item_ids: Iterable[int],
    vectors: npt.NDArray[np.float32],
) -> int:
    """Add cold items to a published version (items it already has keep their vectors);
    return how many were new."""
    keys = VersionKeys(prefix)
    rows = _rows(item_ids, vectors)
    with client.pipeline(transaction=False) as pipe:
        for item, blob in rows:
            pipe.hsetnx(keys.vectors(version), item, blob)  # type: ignore[arg-type]
        pipe.hget(keys.meta(version), "vector_set")
        pipe.ttl(keys.vectors(version))
        *added, vector_set, remaining = pipe.execute(raise_on_error=True)
    new = [row for row, was_added in zip(rows, added, strict=True) if was_added]
    if not new:
        return 0
    with client.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.cold(version), *(item for item, _ in new))
        pipe.rpush(keys.added(version), *(item for item, _ in new))
        if remaining > 0:  # a superseded version: what it gains expires with it
            pipe.expire(keys.cold(version), remaining)
            pipe.expire(keys.added(version), remaining)
        pipe.hincrby(keys.meta(version), "count", len(new))
        pipe.hincrby(keys.meta(version), "cold_count", len(new))
        if vector_set is not None:  # being built or ready: it must hold these too
            for item, blob in new:
                _vadd(pipe, keys.vector_set(version), item, blob)
        pipe.execute(raise_on_error=True)
    return len(new)


def _vadd(pipe: Any, key: str, item: str | bytes, blob: bytes) -> None:
    pipe.execute_command("VADD", key, "FP32", blob, item)


def supports_vector_sets(client: redis.Redis) -> bool:
    """Redis >= 8 ships vector sets (VADD/VSIM); older servers and other stores lack them."""
    version = str(cast(dict[str, Any], client.info("server")).get("redis_version", "0"))
    return int(version.split(".")[0]) >= 8


def build_vector_set(client: redis.Redis, prefix: str, version: int, batch: int = 500) -> int:
    """Copy a published version's vectors into its vector set, then mark it `ready`.

    Runs after the switch (it is slow); cold items added meanwhile go into the set too.
    Returns the number of vectors copied.
    """
    keys = VersionKeys(prefix)
    client.hset(keys.meta(version), "vector_set", "building")
    items = cast(list[bytes], client.hkeys(keys.vectors(version)))
    for start in range(0, len(items), batch):
        part = items[start : start + batch]
        blobs = cast(list[bytes], client.hmget(keys.vectors(version), part))  # versions only grow
        with client.pipeline(transaction=False) as pipe:
            for item, blob in zip(part, blobs, strict=True):
                _vadd(pipe, keys.vector_set(version), item, blob)
            pipe.execute(raise_on_error=True)
    remaining = cast(int, client.ttl(keys.vectors(version)))
    if remaining > 0:  # superseded while building: expire with the rest of the version
        client.expire(keys.vector_set(version), remaining)
    client.hset(keys.meta(version), "vector_set", "ready")
    return len(items)
