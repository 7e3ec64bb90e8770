"""User vectors: the job's users topic -> every user's vector in each version the trainer
publishes, replaced within a poll whenever the user's recent items change.

`UserVectors` runs its own thread beside the trainer's loop, with its own Kafka consumer and
its own durable position (`users/state.npz` under the trainer's directory: every user's
newest users record and the topic offsets after them). It reads versions only as the
publisher hands them over (`publish`, before a version's switch, with the item vectors it
averages): a user's vector in a version only ever averages that version's item vectors.

Records arrive at least once (the job's sink does not wait for a checkpoint, so a change is
readable at once); a record counts only when its (event time, `kept`) is higher than the
user's, so a repeated or reordered record changes nothing. After a crash the thread restores
the state and reads on from the saved offsets: the records since the save are applied again,
over what Redis already holds of the served version's users.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from kafka import KafkaConsumer

from streaming.config import Settings
from streaming.embeddings.users import NO_ITEM, ItemDirections, user_vectors
from streaming.embeddings.vectors import Embeddings, Vectors
from streaming.kafka_clients import kafka_python_config
from streaming.records import MALFORMED, UserItems, read_user_items
from streaming.store import connect
from streaming.store.versions import (
    VersionKeys,
    count_users,
    has_users,
    write_user_items,
    write_users,
)
from streaming.topics import ensure_topics, topic_partitions
from streaming.trainer.durable import write_atomically
from streaming.trainer.metrics import TrainerMetrics

__all__ = ["RecentItems", "UserVectors"]

_SAVE_EVERY_S = 5.0
_TARGETS = 2  # the version being prepared and the current one
_PUBLISH_CHUNK = 100_000  # users averaged and written at a time
# Chunks averaged ahead of the writes, at most: enough that the writer seldom waits for the
# averaging (bench_users measures the rate), and a bound on what is held: about 150 MB at
# 100,000 users x 64 float32 each.
_AHEAD = 6


class RecentItems:
    """Each user's newest users record, as arrays over users (so a version's users are
    averaged in one pass). Rows hold the last `limit` items, right-aligned."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._row: dict[int, int] = {}
        self.users = np.zeros(0, dtype=np.int64)
        self.kept = np.zeros(0, dtype=np.int64)
        self.event_time = np.zeros(0, dtype=np.int64)
        self.items = np.zeros((0, limit), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._row)

    def apply(self, record: UserItems) -> int | None:
        """Take `record` if it is newer than what its user has, by (event time, kept): `kept`
        grows with each record of a user's sequence, and starts again (at a later event time)
        when the job forgot an idle user. Return the user's row then, None if it changed
        nothing."""
        row = self._row.get(record.user)
        if row is not None and (record.event_time, record.kept) <= (
            self.event_time[row],
            self.kept[row],
        ):
            return None
        if row is None:
            row = self._append(record.user)
        items = record.items[-self.limit :]
        self.kept[row] = record.kept
        self.event_time[row] = record.event_time
        self.items[row] = NO_ITEM
        if items:
            self.items[row, self.limit - len(items) :] = items
        return row

    def _append(self, user: int) -> int:
        row = len(self._row)
        if row == len(self.users):
            grow = max(1_024, row)
            self.users = np.concatenate([self.users, np.zeros(grow, dtype=np.int64)])
            self.kept = np.concatenate([self.kept, np.zeros(grow, dtype=np.int64)])
            self.event_time = np.concatenate([self.event_time, np.zeros(grow, dtype=np.int64)])
            self.items = np.concatenate(
                [self.items, np.full((grow, self.limit), NO_ITEM, dtype=np.int64)]
            )
        self.users[row] = user
        self._row[user] = row
        return row

    def columns(
        self,
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
    ]:
        """(users, kept, event_time, items), with spare rows at the end."""
        return self.users, self.kept, self.event_time, self.items

    def rows_of(self, users: Sequence[int]) -> npt.NDArray[np.int64]:
        """The rows of those of `users` the state holds."""
        return np.array([self._row[u] for u in users if u in self._row], dtype=np.int64)

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(user ids, their recent items) of every user, row for row."""
        size = len(self._row)
        return self.users[:size], self.items[:size]

    def forget_idle(self, idle_s: int) -> list[int]:
        """Forget users whose newest kept rating is more than `idle_s` older (in event time)
        than the newest of anyone's; return who they were."""
        size = len(self._row)
        if not idle_s or size == 0:
            return []
        keep = self.event_time[:size] >= self.event_time[:size].max() - idle_s
        if keep.all():
            return []
        gone: list[int] = self.users[:size][~keep].tolist()
        self._set(self.users[:size][keep], self.kept[:size][keep],
                  self.event_time[:size][keep], self.items[:size][keep])  # fmt: skip
        return gone

    def _set(
        self,
        users: npt.NDArray[np.int64],
        kept: npt.NDArray[np.int64],
        event_time: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
    ) -> None:
        self.users, self.kept, self.event_time = users.copy(), kept.copy(), event_time.copy()
        self.items = items.copy()
        self._row = {int(user): row for row, user in enumerate(users.tolist())}

    def to_bytes(self, offsets: Mapping[str, int]) -> bytes:
        size = len(self._row)
        users, kept, event_time, items = (array[:size] for array in self.columns())
        return _state_bytes(users, kept, event_time, items, offsets)

    @classmethod
    def from_file(cls, path: Path, limit: int) -> tuple[RecentItems, dict[str, int]]:
        """The state saved at `path` (an empty one if there is none), with the offsets after
        it. Rows saved with another `limit` keep their newest items."""
        state = cls(limit)
        if not path.exists():
            return state, {}
        with np.load(path, allow_pickle=False) as saved:
            items = saved["items"]
            width = min(limit, items.shape[1])
            rows = np.full((len(items), limit), NO_ITEM, dtype=np.int64)
            if width:
                rows[:, limit - width :] = items[:, items.shape[1] - width :]
            state._set(saved["users"], saved["kept"], saved["event_time"], rows)
            offsets = {key: int(value) for key, value in json.loads(str(saved["offsets"])).items()}
        return state, offsets


def _state_bytes(
    users: npt.NDArray[np.int64],
    kept: npt.NDArray[np.int64],
    event_time: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    offsets: Mapping[str, int],
) -> bytes:
    """The file `RecentItems.from_file` reads (NumPy's npz: no pickles)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        users=users,
        kept=kept,
        event_time=event_time,
        items=items,
        offsets=np.array(json.dumps(dict(offsets))),
    )
    return buffer.getvalue()


_Averaged = Future[tuple[Vectors, npt.NDArray[np.bool_]]]
"""One chunk of users being averaged: their vectors, and who has one."""


class UserVectors:
    """The users topic -> user vectors in the versions the publisher hands over."""

    def __init__(self, settings: Settings, metrics: TrainerMetrics) -> None:
        self.settings = settings
        self.options = settings.users
        self.metrics = metrics
        self.redis = connect(settings.redis)
        self.prefix = settings.redis.key_prefix
        directory = settings.trainer_dir / "users"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "state.npz"
        self.state, self.offsets = RecentItems.from_file(self.path, self.options.recent_items)
        self._lock = threading.Lock()
        self._targets: dict[int, Mapping[int, Vectors]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._changed_meanwhile: set[int] | None = None  # users changed while publishing

    # -- versions ----------------------------------------------------------------------

    def publish(self, version: int, embeddings: Embeddings, vectors: Mapping[int, Vectors]) -> int:
        """Write every user's vector into `version` (written, not yet current), averaged from
        `embeddings`; later changes of a user go to it too, from `vectors` (the version's
        item vectors, which grow as cold items are added). Users idle past
        `users.idle_ttl_s` are forgotten first. Returns how many users got a vector.

        Updates go on meanwhile: the users are copied under the lock, averaged and written
        without it, and those that changed meanwhile are written again before the version
        becomes a target."""
        with self._lock:
            forgotten = self.state.forget_idle(self.options.idle_ttl_s)
            users, recent = (array.copy() for array in self.state.arrays())
            if not self.redis.exists(VersionKeys(self.prefix).user_items):  # Redis lost it
                write_user_items(self.redis, self.prefix, users, recent, gone=forgotten)
            elif forgotten:
                write_user_items(self.redis, self.prefix, users[:0], recent[:0], gone=forgotten)
            self._changed_meanwhile = set()
        placed = self._write_all(version, embeddings, users, recent)
        with self._lock:
            changed, self._changed_meanwhile = self._changed_meanwhile, None
            info = {
                "recent_items": self.options.recent_items,
                "recency_decay": self.options.recency_decay,
                "idle_ttl_s": self.options.idle_ttl_s,
                "without_vector": len(users) - placed,
                "forgotten": len(forgotten),
            }
            if changed and not self._write_version(
                version, vectors, self.state.rows_of(sorted(changed))
            ):
                return 0
            if count_users(self.redis, self.prefix, version, info) is None:
                return 0  # gone already: nothing to follow
            self._targets[version] = vectors
            for old in sorted(self._targets)[:-_TARGETS]:
                del self._targets[old]
        self.metrics.users.set(placed)
        return placed

    def _write_all(
        self,
        version: int,
        embeddings: Embeddings,
        users: npt.NDArray[np.int64],
        recent: npt.NDArray[np.int64],
    ) -> int:
        """Average and write every user, in chunks: averaged on two threads (NumPy and SciPy,
        without the GIL) while the chunks before them are written, at most `_AHEAD` chunks'
        vectors held. Returns how many users got a vector."""
        items = ItemDirections.of(embeddings)
        decay = self.options.recency_decay
        placed = 0

        def write(start: int, averaged: _Averaged) -> bool:
            nonlocal placed
            found, has = averaged.result()
            part = users[start : start + _PUBLISH_CHUNK]
            placed += int(has.sum())
            return write_users(self.redis, self.prefix, version, part[has], found[has])

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="user-vectors") as pool:
            pending: deque[tuple[int, _Averaged]] = deque()
            for start in range(0, len(users), _PUBLISH_CHUNK):
                part = recent[start : start + _PUBLISH_CHUNK]
                pending.append((start, pool.submit(user_vectors, part, items, decay)))
                if len(pending) == _AHEAD and not write(*pending.popleft()):
                    return placed  # the version is gone
            while pending:
                if not write(*pending.popleft()):
                    return placed
        return placed

    def adopt(self, version: int, embeddings: Embeddings, vectors: Mapping[int, Vectors]) -> None:
        """Follow the served `version` after a restart: its users stay as they are in Redis
        (newer than the saved state; the records since the save are read again), unless they
        were never written, then they are written now."""
        if not has_users(self.redis, self.prefix, version):
            self.publish(version, embeddings, vectors)
            return
        with self._lock:
            self._targets[version] = vectors

    def switched(self, version: int) -> None:
        """`version` is current: older versions get no more updates (they are expiring)."""
        with self._lock:
            for old in [v for v in self._targets if v < version]:
                del self._targets[old]

    # -- the thread --------------------------------------------------------------------

    def start(self, served: tuple[int, Embeddings, Mapping[int, Vectors]] | None) -> None:
        """Follow the `served` version (version, its embeddings, its item vectors), if any
        (`adopt`), then the users topic, in a thread, from the saved offsets."""
        ensure_topics(self.settings.kafka, [self.settings.kafka.topics.users])
        if served is not None:
            self.adopt(*served)
        self._thread = threading.Thread(target=self._run, name="user-vectors", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def raise_if_failed(self) -> None:
        """Raise what stopped the thread, if it stopped on an error (the trainer then stops:
        users' vectors would silently go stale)."""
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            self._consume()
        except BaseException as error:  # reported by raise_if_failed in the trainer's loop
            self._failure = error
            raise

    def _consume(self) -> None:
        topic = self.settings.kafka.topics.users
        consumer = KafkaConsumer(
            **kafka_python_config(self.settings.kafka),
            enable_auto_commit=False,
            max_poll_records=20_000,
        )
        try:
            partitions = topic_partitions(self.settings.kafka, [topic])
            consumer.assign(partitions)
            for tp in partitions:
                position = self.offsets.get(f"{tp.topic}:{tp.partition}")
                if position is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, position)
            saved = time.monotonic()
            # Saves (an fsync, which can wait seconds behind other writes to the disk) run in
            # a thread of their own, so that they never hold up a user's update.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="user-state") as saver:
                saving: Future[None] | None = None
                while not self._stop.is_set():
                    polled = consumer.poll(timeout_ms=100)
                    if polled:
                        self._apply(polled)
                    idle = saving is None or saving.done()
                    if idle and time.monotonic() - saved >= _SAVE_EVERY_S:
                        if saving is not None:
                            saving.result()  # a failed save stops the thread, loudly
                        saving = saver.submit(self._save, self._snapshot())
                        saved = time.monotonic()
                if saving is not None:
                    saving.result()
            self._save(self._snapshot())
        finally:
            consumer.close()

    def _apply(self, polled: Mapping[Any, list[Any]]) -> None:
        """Take the records of one poll, then rewrite the users they changed in every
        target version; the offsets advance only then."""
        changed: list[int] = []
        with self._lock:
            for tp, records in polled.items():
                for record in records:
                    try:
                        row = self.state.apply(read_user_items(record.value))
                    except MALFORMED:
                        self.metrics.users_malformed.inc()
                        continue
                    if row is not None:
                        changed.append(row)
                self.offsets[f"{tp.topic}:{tp.partition}"] = records[-1].offset + 1
            if changed:
                rows = np.unique(np.array(changed, dtype=np.int64))
                if self._changed_meanwhile is not None:
                    self._changed_meanwhile.update(self.state.users[rows].tolist())
                self._rewrite(rows)

    def _rewrite(self, rows: npt.NDArray[np.int64]) -> None:
        """The users at `rows` of the state, in every target version and in `P:user-items`."""
        for version, vectors in list(self._targets.items()):
            if not self._write_version(version, vectors, rows):
                del self._targets[version]
        write_user_items(self.redis, self.prefix, self.state.users[rows], self.state.items[rows])
        self.metrics.user_updates.inc(len(rows))

    def _write_version(
        self, version: int, vectors: Mapping[int, Vectors], rows: npt.NDArray[np.int64]
    ) -> bool:
        """The users at `rows` of the state averaged from `vectors` and written into
        `version` (users none of whose items it knows dropped from it); False if the version
        is gone."""
        users, recent = self.state.users[rows], self.state.items[rows]
        known = [item for item in np.unique(recent[recent != NO_ITEM]).tolist() if item in vectors]
        items = Embeddings(
            np.array(known, dtype=np.int64),
            np.vstack([vectors[item] for item in known]) if known else np.zeros((0, 1), np.float32),
            np.zeros(len(known), dtype=bool),
        )
        found, has = user_vectors(recent, ItemDirections.of(items), self.options.recency_decay)
        return write_users(
            self.redis, self.prefix, version, users[has], found[has], gone=users[~has].tolist()
        )

    def _save(self, snapshot: Callable[[], bytes]) -> None:
        write_atomically(self.path, snapshot())

    def _snapshot(self) -> Callable[[], bytes]:
        """The state and the offsets after it, copied consistently now (a memory copy, so a
        user's update waits that long at most), serialised when called."""
        with self._lock:
            size = len(self.state)
            users, kept, event_time, items = (a[:size].copy() for a in self.state.columns())
            offsets = dict(self.offsets)
        return lambda: _state_bytes(users, kept, event_time, items, offsets)
