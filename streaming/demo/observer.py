"""The demo's view from outside while events stream: what was sent, how far the job's
consumer group got, and which versions Redis serves."""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from typing import Any

import numpy as np
from kafka import KafkaConsumer

from streaming.config import Settings
from streaming.core.events import Event
from streaming.core.sequences import UserSequence
from streaming.demo.children import Children
from streaming.embeddings.vectors import Embeddings
from streaming.errors import RuntimeServiceError, StoreError
from streaming.kafka_clients import kafka_admin, kafka_python_config
from streaming.plot import TimelinePoint, version_embeddings
from streaming.report import Report
from streaming.store import EmbeddingClient
from streaming.store.client import VersionView
from streaming.topics import topic_partitions

__all__ = ["Observer"]


class Observer:
    """Watches the system from outside, as a user would: what was sent, how far the job's
    consumer group got, and what Redis serves (polled by a thread four times a second)."""

    _PERIOD_S = 0.25

    def __init__(self, settings: Settings, children: Children) -> None:
        kafka = settings.kafka
        self.settings = settings
        self._children = children
        self._client = EmbeddingClient.from_settings(settings.redis)
        self._admin = kafka_admin(kafka)
        self._ratings = topic_partitions(kafka, [kafka.topics.ratings])
        self._ends = KafkaConsumer(**kafka_python_config(kafka))
        self._sequences: dict[int, UserSequence] = {}
        self.lock = threading.Lock()
        self.began = time.monotonic()
        self.first_sent: dict[int, float] = {}
        """Items that occurred in a transition (what the job sees), and when first sent."""
        self.vector_at: dict[int, float] = {}
        """When each item first had a vector in Redis (in any version)."""
        self.serving: set[int] = set()
        """Items of the current version."""
        self._event_times: list[int] = []
        self._sent_at: list[float] = []
        """Wall-clock time at which the first event of each (increasing) event time was sent."""
        self.model_lag_s: dict[int, float] = {}
        """Per version: its publish time minus when the newest event it covers was sent."""
        self.version: int | None = None
        self.version_items = 0
        self.version_cold = 0
        self.first_version_at: float | None = None
        self.timeline: list[TimelinePoint] = []
        self._failure: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="demo-observer", daemon=True)
        self._thread.start()

    def on_event(self, event: Event) -> None:
        """Note when each item's first transition was sent (the order the job applies)."""
        if not self._event_times or event.event_time > self._event_times[-1]:
            self._event_times.append(event.event_time)
            self._sent_at.append(time.time())
        if event.rating < self.settings.events.high_rating:
            return
        sequence = self._sequences.setdefault(event.user_id, UserSequence())
        sequence.add(event.item_id, event.event_time)
        for transition in sequence.advance(event.event_time):
            now = time.monotonic()
            self.first_sent.setdefault(transition.src, now)
            self.first_sent.setdefault(transition.dst, now)

    def _watch(self) -> None:
        try:
            while not self._stopped.wait(self._PERIOD_S):
                self._tick()
        except Exception as exc:  # noqa: BLE001 - handed to the main thread by check()
            self._failure = exc

    def _tick(self) -> None:
        now = time.monotonic()
        with contextlib.suppress(StoreError):  # a version switched away mid-read: next tick
            view = self._client.current() if self._client.version is not None else None
            if view is not None:
                items, meta = view.items(), view.meta()
                lag = self._lag(view.version, meta)
                with self.lock:
                    if lag is not None:
                        self.model_lag_s[view.version] = lag
                    for item in items.difference(self.vector_at):
                        self.vector_at[item] = now
                    self.serving = items
                    if self.first_version_at is None:
                        self.first_version_at = now
                    self.version = view.version
                    self.version_items, self.version_cold = meta["count"], meta["cold_count"]
        with self.lock:
            fresh = self.freshness()
            seen = list(self.first_sent)
            covered = sum(1 for item in seen if item in self.serving)
            self.timeline.append(
                TimelinePoint(
                    seconds=now - self.began,
                    version=self.version,
                    items=self.version_items,
                    cold=self.version_cold,
                    coverage=covered / len(seen) if seen else None,
                    freshness_p50_s=float(np.percentile(fresh, 50)) if fresh else None,
                    freshness_p99_s=float(np.percentile(fresh, 99)) if fresh else None,
                    model_lag_s=self.model_lag_s.get(self.version or 0),
                )
            )

    def _lag(self, version: int, meta: dict[str, Any]) -> float | None:
        newest = meta["info"].get("newest_event_time")
        if version in self.model_lag_s or newest is None:
            return None
        index = bisect.bisect_right(self._event_times, int(newest)) - 1
        return float(meta["created_at"]) - self._sent_at[index] if index >= 0 else None

    def freshness(self, since: float | None = None) -> list[float]:
        return [
            at - self.first_sent[item]
            for item, at in self.vector_at.items()
            if item in self.first_sent and (since is None or self.first_sent[item] >= since)
        ]

    def check(self) -> None:
        self._children.check()
        if self._failure is not None:
            raise RuntimeServiceError(f"demo: watching Kafka and Redis failed: {self._failure}")

    def consumed(self) -> tuple[int, int]:
        """(events the job has committed as consumed, events in the ratings topic)."""
        group = self.settings.stream.group_id
        offsets = self._admin.list_group_offsets({group: None})[group]
        done = sum(offsets[tp].offset for tp in self._ratings if tp in offsets)
        end = self._ends.end_offsets(self._ratings)
        return done, sum(end.values())

    def status(self) -> str:
        with self.lock:
            seen = list(self.first_sent)
            covered = sum(1 for item in seen if item in self.serving)
            fresh = self.freshness()
            version = (
                f"version {self.version}: {self.version_items:,} items ({self.version_cold:,} cold)"
                if self.version is not None
                else "no version yet"
            )
            freshness = f", freshness p50 {np.percentile(fresh, 50):.1f}s" if fresh else ""
            return f"seen {len(seen):,} items, {covered:,} with a vector; {version}{freshness}"

    def wait_until_covered(self, wait_s: float, report: Report) -> float:
        """Wait until the job consumed every event and every item that occurred in a
        transition has a vector; return the seconds from the start of streaming until the job
        had consumed them all."""
        deadline = time.monotonic() + wait_s
        drained_at: float | None = None
        last_report = 0.0
        while True:
            self.check()
            done, total = self.consumed()
            now = time.monotonic()
            if drained_at is None and done >= total:
                drained_at = now
            with self.lock:
                covered = all(item in self.serving for item in list(self.first_sent))
            if drained_at is not None and covered:
                return drained_at - self.began
            if now > deadline:
                raise RuntimeServiceError(
                    f"gave up after waiting {wait_s:.0f}s: the job consumed {done:,} of "
                    f"{total:,} events; {self.status()}. The logs of the job and the trainer "
                    f"are in {self.settings.checkpoint_dir.parent}"
                )
            if now - last_report >= 3:
                last_report = now
                report(
                    f"  {now - self.began:5.0f}s  job consumed {done:,}/{total:,} events; "
                    f"{self.status()}"
                )
            time.sleep(0.5)

    def user_view(self, user: int, recent: list[int], wait_s: float) -> VersionView:
        """The current version, once it holds `user`'s vector from their `recent` items (the
        trainer's user thread follows the users topic within a poll)."""
        deadline = time.monotonic() + wait_s
        while True:
            self.check()
            view = self._client.current()
            if view.user_items(user) == recent and view.user_vector(user) is not None:
                return view
            if time.monotonic() > deadline:
                raise RuntimeServiceError(
                    f"gave up after waiting {wait_s:.0f}s for user {user}'s vector in version "
                    f"{view.version}: is users.enabled off? The trainer's log is in "
                    f"{self.settings.checkpoint_dir.parent}"
                )
            time.sleep(0.2)

    def embeddings(self) -> Embeddings:
        return version_embeddings(self._client.current())

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._ends.close()
        self._admin.close()
        self._client.close()
