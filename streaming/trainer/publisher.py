"""The trainer's side of the store: versions (with their users' vectors), cold items added
between cycles, republishing.

Vector sets are built in threads beside the trainer, the only slow step of a publish.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming.config import Settings
from streaming.core.neighbours import neighbour_average
from streaming.embeddings.vectors import Embeddings
from streaming.report import Report
from streaming.store import connect
from streaming.store.versions import (
    VersionKeys,
    add_to_version,
    build_vector_set,
    current_version,
    publish_version,
    restore_sequence,
    supports_vector_sets,
)
from streaming.trainer.metrics import TrainerMetrics
from streaming.trainer.users import UserVectors

__all__ = ["Published", "Publisher"]


@dataclass
class Published:
    """The version consumers read, as the trainer last wrote it."""

    version: int
    embeddings: Embeddings
    vectors: dict[int, npt.NDArray[np.float32]]


class Publisher:
    def __init__(
        self,
        settings: Settings,
        metrics: TrainerMetrics,
        report: Report,
        published: Published | None,
        users: UserVectors | None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.report = report
        self.redis = connect(settings.redis)
        self.prefix = settings.redis.key_prefix
        self.published = published
        self.users = users
        self._builders: list[threading.Thread] = []

    def publish(self, embeddings: Embeddings, info: dict[str, Any]) -> int:
        """A new version of `embeddings`, current once written whole; `info` goes to its meta."""
        if self.published is not None:
            restore_sequence(self.redis, self.prefix, self.published.version)
        vectors = embeddings.as_dict()
        users = self.users
        version = publish_version(
            self.redis,
            self.prefix,
            embeddings.item_ids,
            embeddings.vectors,
            embeddings.item_ids[embeddings.cold],
            info,
            grace_s=self.settings.trainer.grace_s,
            preload_s=self.settings.trainer.preload_s,
            prepare=None if users is None else lambda v: users.publish(v, embeddings, vectors),
        )
        if users is not None:
            users.switched(version)
        self.published = Published(version, embeddings, vectors)
        self.metrics.version.set(version)
        if supports_vector_sets(self.redis):
            builder = threading.Thread(
                target=build_vector_set,
                args=(connect(self.settings.redis), self.prefix, version),
                name=f"vector-set-{version}",
                daemon=True,
            )
            builder.start()
            self._builders = [b for b in self._builders if b.is_alive()] + [builder]
        return version

    def publish_cold(
        self,
        items: Collection[int],
        neighbours: Mapping[int, Mapping[int, int]],
    ) -> None:
        """Items the current version lacks get their neighbours' average now, not next cycle."""
        published = self.published
        if published is None:
            return
        ids, vectors = [], []
        for item in items:
            if item in published.vectors:
                continue
            average = neighbour_average(neighbours[item], published.vectors)
            if average is not None:
                ids.append(item)
                vectors.append(average)
        if ids:
            added = add_to_version(
                self.redis, self.prefix, published.version, ids, np.vstack(vectors)
            )
            published.vectors.update(zip(ids, vectors, strict=True))
            self.metrics.cold_published.inc(added)

    def ensure_published(self, info: dict[str, Any]) -> None:
        """If Redis lost the current version (restarted empty), publish the last good one
        again, with `info` as its meta."""
        published = self.published
        if published is None:
            return
        version = current_version(self.redis, self.prefix)
        if version is not None and self.redis.exists(VersionKeys(self.prefix).meta(version)):
            return
        self.report(
            f"trainer: Redis has no current version (had {published.version}): republishing"
        )
        self.publish(published.embeddings, info)

    def close(self) -> None:
        """Wait for the vector sets being built."""
        for builder in self._builders:
            builder.join()
