"""Reading embeddings from Redis: one version at a time, never a mix of two.

```python
client = EmbeddingClient.from_settings(load_settings().redis)  # the local stack's password too
client.vectors([1, 2, 3])          # {item: float32 array}, all from the current version
client.similar(1, k=10)            # [(item, cosine), ...]
client.similar_many([1, 2], k=10)  # one list per item, searched as a batch
client.nearest(vector, k=10)       # the items nearest to any vector
client.user_vector(7)              # user 7's vector in the current version (or None)
client.recommend(7, k=10)          # items nearest to user 7's vector, their recent items left out
for view in client.follow():       # a VersionView per newly published version
    view.vectors([1, 2, 3])        # pinned: every read comes from view.version
```

Every call of `EmbeddingClient` resolves the current version once and reads only that
version's keys. A version's keys outlive the switch by the publisher's grace period; a
reader that held a version longer than that gets a `StoreError` (re-resolve), not a
silently empty answer.

Nearest-item queries run in the reader's process: a view loads its version's index (built by
the publisher before the switch; see streaming.store.index) once, plus the items added to the
version since, and keeps them for later calls; the client keeps the view of the current
version across calls and replaces it when the version changes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis

from streaming.config import RedisSettings
from streaming.errors import StoreError
from streaming.store.connection import connect
from streaming.store.index import Neighbours, graph_only, load_index, unit_rows
from streaming.store.versions import VersionKeys, current_version, decode_items, decode_vector

__all__ = ["EmbeddingClient", "VersionView"]

_log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]


class VersionView:
    """One published version: every read comes from it or fails."""

    def __init__(self, connection: redis.Redis, keys: VersionKeys, version: int) -> None:
        self.version = version
        self._redis = connection
        self._keys = keys
        # the search structure, kept for the view's lifetime; reloaded when the version grew
        self._loaded: Neighbours | None = None
        self._load_lock = threading.Lock()
        self._scan_only = False  # its index is in a format this reader does not search

    def _read(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run `commands` with a check that the version still exists, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._keys.meta(self.version))
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            exists, *results = pipe.execute()
        if not exists:
            raise StoreError(
                f"version {self.version} is gone from Redis (expired after its grace period, "
                "or Redis lost its data): read the current version again"
            )
        return results

    def meta(self) -> dict[str, Any]:
        """dim, count, cold_count, created_at, vector_set and the publisher's `info`; `users`
        and `users_info` once user vectors were written into the version."""
        (raw,) = self._read(("HGETALL", self._keys.meta(self.version)))
        meta: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        for field in ("dim", "count", "cold_count"):
            meta[field] = int(meta[field])
        meta["created_at"] = float(meta["created_at"])
        meta["info"] = json.loads(meta.get("info", "{}"))
        if "users" in meta:
            meta["users"] = int(meta["users"])
            meta["users_info"] = json.loads(meta.get("users_info", "{}"))
        return meta

    def vectors(self, items: Iterable[int]) -> dict[int, Vector]:
        """Vectors of the items this version has; missing items are left out."""
        ids = [int(item) for item in items]
        if not ids:
            return {}
        (blobs,) = self._read(("HMGET", self._keys.vectors(self.version), *ids))
        return {item: decode_vector(blob) for item, blob in zip(ids, blobs, strict=True) if blob}

    def vector(self, item: int) -> Vector | None:
        return self.vectors([item]).get(int(item))

    def items(self) -> set[int]:
        """Every item this version has a vector for."""
        (keys,) = self._read(("HKEYS", self._keys.vectors(self.version)))
        return {int(key) for key in keys}

    def all_vectors(self) -> tuple[list[int], Matrix]:
        """Every item of this version and its vector (rows in the same order)."""
        (raw,) = self._read(("HGETALL", self._keys.vectors(self.version)))
        ids = [int(key) for key in raw]
        if not ids:
            return ids, np.zeros((0, 0), dtype=np.float32)
        return ids, np.stack([decode_vector(blob) for blob in raw.values()])

    def cold(self, items: Iterable[int]) -> set[int]:
        """Which of `items` have a neighbour-average vector rather than a trained one."""
        ids = [int(item) for item in items]
        if not ids:
            return set()
        (flags,) = self._read(("SMISMEMBER", self._keys.cold(self.version), *ids))
        return {item for item, flag in zip(ids, flags, strict=True) if flag}

    def similar(self, item: int, k: int = 10) -> list[tuple[int, float]]:
        """The `k` items nearest to `item` by cosine, best first; [] if it has no vector."""
        return self.similar_many([item], k)[0]

    def similar_many(self, items: Iterable[int], k: int = 10) -> list[list[tuple[int, float]]]:
        """`similar` for each of `items` (same order), searched as one batch."""
        ids = [int(item) for item in items]
        if not ids:
            return []
        count, blobs = self._read(*self._similar_reads(ids))
        return self._answer(ids, k, int(count), blobs)

    def _similar_while_current(
        self, items: Iterable[int], k: int
    ) -> list[list[tuple[int, float]]] | None:
        """`similar_many` in one round trip that also resolves `P:current`: None (nothing
        answered) if this version is no longer current."""
        ids = [int(item) for item in items]
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.current)
            for command in self._similar_reads(ids):
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            current, count, blobs = pipe.execute()
        if current is None or int(current) != self.version or count is None:
            return None
        return self._answer(ids, k, int(count), blobs)

    def _similar_reads(self, ids: list[int]) -> list[tuple[Any, ...]]:
        return [
            ("HGET", self._keys.meta(self.version), "count"),
            ("HMGET", self._keys.vectors(self.version), *ids),
        ]

    def _answer(
        self, ids: list[int], k: int, count: int, blobs: list[bytes | None]
    ) -> list[list[tuple[int, float]]]:
        known = [i for i, blob in enumerate(blobs) if blob is not None]
        answers: list[list[tuple[int, float]]] = [[] for _ in ids]
        if not known:
            return answers
        queries = np.stack([decode_vector(blob) for blob in blobs if blob is not None])
        exclude = np.array([ids[i] for i in known], dtype=np.int64)
        found = self._neighbours(count).nearest(queries, k, exclude)
        for i, row in zip(known, found, strict=True):
            answers[i] = row
        return answers

    def user_vectors(self, users: Iterable[int]) -> dict[int, Vector]:
        """Vectors of the users this version has one for; others are left out."""
        ids = [int(user) for user in users]
        if not ids:
            return {}
        (blobs,) = self._read(("HMGET", self._keys.users(self.version), *ids))
        return {user: decode_vector(blob) for user, blob in zip(ids, blobs, strict=True) if blob}

    def user_vector(self, user: int) -> Vector | None:
        return self.user_vectors([user]).get(int(user))

    def user_items(self, user: int) -> list[int]:
        """The user's recent kept items, oldest first (what their vector in the newest
        version averages)."""
        (raw,) = self._read(("HGET", self._keys.user_items, int(user)))
        return decode_items(raw).tolist() if raw else []

    def recommend(
        self, user: int, k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[int, float]]:
        """The `k` items nearest to the user's vector by cosine, best first, without the
        user's recent items when `exclude_seen`; [] for a user without a vector."""
        count, blob, seen = self._read(
            ("HGET", self._keys.meta(self.version), "count"),
            ("HGET", self._keys.users(self.version), int(user)),
            ("HGET", self._keys.user_items, int(user)),
        )
        if blob is None:
            return []
        query = decode_vector(blob).reshape(1, -1)
        exclude = decode_items(seen).reshape(1, -1) if exclude_seen and seen else None
        return self._neighbours(int(count)).nearest(query, k, exclude)[0]

    def warm(self) -> None:
        """Load this version's search structure now rather than on the first query."""
        (count,) = self._read(("HGET", self._keys.meta(self.version), "count"))
        self._neighbours(int(count))

    def nearest(self, vector: npt.ArrayLike, k: int = 10) -> list[tuple[int, float]]:
        """The `k` items of this version nearest to `vector` by cosine, best first."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        (count,) = self._read(("HGET", self._keys.meta(self.version), "count"))
        return self._neighbours(int(count)).nearest(query, k, None)[0]

    def _neighbours(self, count: int) -> Neighbours:
        """The search structure of this version at `count` items: loaded once, reloaded
        (only the items added since) when the version grew."""
        loaded = self._loaded
        if loaded is not None and loaded.size == count:
            return loaded
        with self._load_lock:
            if self._loaded is None or self._loaded.size != count:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> Neighbours:
        """Plain reads only (a read-only ACL user can run them). The added items are read
        from their list, whose length is the version's growth: a load that raced a writer's
        addition is smaller than the next `count`, and the next call loads again."""
        (dim, index_count, index_digest), added = self._read(
            ("HMGET", self._keys.meta(self.version), "dim", "index_count", "index_digest"),
            ("LRANGE", self._keys.added(self.version), 0, -1),
        )
        index = self._loaded.index if self._loaded is not None else None
        if index is None and index_count is not None and not self._scan_only:
            graph, rows = self._read(
                ("GET", self._keys.index(self.version)),
                ("GET", self._keys.index_rows(self.version)),
            )
            if rows is None and graph is not None and graph_only(graph, index_digest.decode()):
                _log.warning(
                    "version %s has an index in a former format: scanned exactly; the "
                    "trainer's next version is indexed",
                    self.version,
                )
                self._scan_only = True
            else:
                index = load_index(
                    rows or b"", graph or b"", index_digest.decode(), int(dim), int(index_count)
                )
        if index_count is None or self._scan_only:  # no index: scan the version exactly
            ids, matrix = self.all_vectors()
            return Neighbours(None, np.array(ids, dtype=np.int64), unit_rows(matrix))
        extra = [int(item) for item in added]
        vectors = self.vectors(extra)
        matrix = (
            np.stack([vectors[item] for item in extra])
            if extra
            else np.zeros((0, int(dim)), dtype=np.float32)
        )
        return Neighbours(index, np.array(extra, dtype=np.int64), unit_rows(matrix))


class EmbeddingClient:
    """Embeddings of the current version, for online consumers in Python."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:26379/0",
        *,
        prefix: str = "walkstream",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._open(
            RedisSettings.model_validate(
                {"url": url, "key_prefix": prefix, "username": username, "password": password}
            )
        )

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> EmbeddingClient:
        """A client connected as walkstream's settings say: password (or the local stack's
        password file), TLS files, key prefix."""
        client = cls.__new__(cls)
        client._open(settings)
        return client

    def _open(self, settings: RedisSettings) -> None:
        self._redis = connect(settings)
        self._keys = VersionKeys(settings.key_prefix)
        self._view: VersionView | None = None
        self._preloaded: VersionView | None = None
        self._stop = threading.Event()
        self._preloader: threading.Thread | None = None

    @property
    def version(self) -> int | None:
        """The current version, or None before the first publish."""
        return current_version(self._redis, self._keys.prefix)

    def current(self) -> VersionView:
        """The current version, pinned: use it for reads that must agree with each other."""
        version = self.version
        if version is None:
            raise StoreError(
                f"no embedding version under prefix {self._keys.prefix!r} yet: "
                "start the trainer (or `walkstream batch --publish`) first"
            )
        view = self._view
        if view is None or view.version != version:  # the view keeps what it loaded
            preloaded = self._preloaded
            if preloaded is not None and preloaded.version == version:
                view = preloaded
            else:
                view = VersionView(self._redis, self._keys, version)
            self._view = view
        return view

    def preload(self, block_s: float = 1.0) -> None:
        """Load each version as soon as the publisher announces it (`P:prepared`, before its
        switch) in a background thread, so the first query on a new version finds its index
        loaded. Holds up to two versions in memory; `close()` stops it."""
        if self._preloader is not None:
            return
        self._preloader = threading.Thread(
            target=self._preload_loop, args=(block_s,), name="walkstream-preload", daemon=True
        )
        self._preloader.start()

    @property
    def preloaded(self) -> int | None:
        """The newest version the preloader has loaded, if any."""
        view = self._preloaded
        return view.version if view is not None else None

    def _preload_loop(self, block_s: float) -> None:
        last_id: bytes | str = "$"
        while not self._stop.is_set():
            reply = cast(
                list[Any],
                self._redis.xread({self._keys.prepared: last_id}, block=int(block_s * 1000)),
            )
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    view = VersionView(self._redis, self._keys, int(fields[b"version"]))
                    try:
                        view.warm()
                    except StoreError as exc:  # gone already: queries load what is current
                        _log.warning("preloading version %s failed: %s", view.version, exc)
                        continue
                    self._preloaded = view

    def vectors(self, items: Iterable[int]) -> dict[int, Vector]:
        return self.current().vectors(items)

    def vector(self, item: int) -> Vector | None:
        return self.current().vector(item)

    def similar(self, item: int, k: int = 10) -> list[tuple[int, float]]:
        return self.similar_many([item], k)[0]

    def similar_many(self, items: Iterable[int], k: int = 10) -> list[list[tuple[int, float]]]:
        ids = [int(item) for item in items]
        if not ids:
            return []
        view = self._view
        if view is not None:  # still current? then one round trip answers
            answer = view._similar_while_current(ids, k)
            if answer is not None:
                return answer
        return self.current().similar_many(ids, k)

    def nearest(self, vector: npt.ArrayLike, k: int = 10) -> list[tuple[int, float]]:
        return self.current().nearest(vector, k)

    def user_vectors(self, users: Iterable[int]) -> dict[int, Vector]:
        return self.current().user_vectors(users)

    def user_vector(self, user: int) -> Vector | None:
        return self.current().user_vector(user)

    def recommend(
        self, user: int, k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[int, float]]:
        return self.current().recommend(user, k, exclude_seen)

    def follow(self, block_s: float = 5.0) -> Iterator[VersionView]:
        """Yield a view of the newest version, then of each version as it is published;
        runs until the caller stops iterating."""
        newest = cast(list[Any], self._redis.xrevrange(self._keys.stream, count=1))
        last_id: bytes | str = "0-0"
        for entry_id, fields in newest:
            last_id = entry_id
            yield VersionView(self._redis, self._keys, int(fields[b"version"]))
        while True:
            reply = cast(
                list[Any],
                self._redis.xread(
                    {self._keys.stream: last_id}, count=100, block=int(block_s * 1000)
                ),
            )
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    yield VersionView(self._redis, self._keys, int(fields[b"version"]))

    def history(self) -> list[tuple[int, int, float]]:
        """(version, items when published, created_at) of every version still in the stream."""
        entries = cast(list[Any], self._redis.xrange(self._keys.stream))
        return [
            (int(fields[b"version"]), int(fields[b"count"]), float(fields[b"created_at"]))
            for _, fields in entries
        ]

    def close(self) -> None:
        self._stop.set()
        if self._preloader is not None:
            self._preloader.join()
        self._redis.close()
