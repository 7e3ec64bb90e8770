"""The trainer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["TrainerMetrics"]


class TrainerMetrics:
    """Prometheus counters and gauges of one trainer (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter("walkstream_trainer_samples", "samples made durable", registry=r)
        self.malformed = Counter(
            "walkstream_trainer_malformed", "unreadable samples/items records skipped", registry=r
        )
        self.cycles = Counter("walkstream_trainer_cycles", "cycles", ["kind"], registry=r)
        self.rejected = Counter(
            "walkstream_trainer_rejected", "candidates the drift gate refused", registry=r
        )
        self.cold_published = Counter(
            "walkstream_trainer_cold_published", "cold vectors added between cycles", registry=r
        )
        self.version = Gauge("walkstream_trainer_version", "published version", registry=r)
        self.lag = Gauge("walkstream_trainer_lag", "records behind the topics' ends", registry=r)
        self.cycle_seconds = Gauge(
            "walkstream_trainer_cycle_seconds", "duration of the last cycle", registry=r
        )
        self.coverage = Gauge(
            "walkstream_trainer_coverage", "share of seen items with a vector", registry=r
        )
        self.cold_items = Gauge("walkstream_trainer_cold_items", "cold vectors", registry=r)
        self.orphans = Gauge(
            "walkstream_trainer_orphan_items", "seen items without any neighbour vector", registry=r
        )
        self.users = Gauge(
            "walkstream_trainer_users", "users with a vector in the newest version", registry=r
        )
        self.user_updates = Counter(
            "walkstream_trainer_user_updates", "user vectors rewritten between versions", registry=r
        )
        self.users_malformed = Counter(
            "walkstream_trainer_users_malformed", "unreadable users records skipped", registry=r
        )
        self.overlap = Gauge(
            "walkstream_trainer_drift_overlap", "top-10 overlap of the last candidate", registry=r
        )
