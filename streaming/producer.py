"""Rating events into Kafka: validated, JSON, keyed by user id.

Keying by user id keeps each user's events in one partition, in the order they were sent,
which is what the job's per-user sequences need. `RatingProducer` is the API for
applications; `produce_file` replays a ratings file in event-time order for `walkstream
produce`, optionally paced to a rate or to the original timing sped up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from streaming.config import Settings
from streaming.core.events import Event, check_received, event_from_mapping
from streaming.errors import ProducerError
from streaming.kafka_clients import librdkafka_config
from streaming.rating_files import EventColumns, Format, load_events
from streaming.records import event_to_json
from streaming.report import Report
from streaming.topics import ensure_topics

__all__ = [
    "Pacer",
    "ProduceReport",
    "RatingProducer",
    "ordered_events",
    "produce_events",
    "produce_file",
]

Progress = Callable[[int, float], None]


class RatingProducer:
    """Send events to the ratings topic; invalid ones raise `InvalidEventError` before sending.

    On librdkafka (confluent-kafka), not kafka-python: a send cost ~75 us of Python in
    kafka-python's record accumulator (13k events/s at most, three quarters of a core at
    10k/s), ~8 us here. Keys are partitioned by murmur2, as Java clients and kafka-python do.
    """

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.kafka.topics.ratings
        self.rules = settings.events
        self.sent = 0
        self._failures: list[str] = []
        self._closed = False
        self._producer = Producer(
            {
                **librdkafka_config(settings.kafka),
                "acks": "all",
                "enable.idempotence": True,  # keeps a user's events in order on retry
                "linger.ms": 20,
                "batch.size": 256 * 1024,
                "partitioner": "murmur2_random",
                "message.timeout.ms": 120_000,
                # Errors only: a warning such as a retried request to a broker that is still
                # starting is noise; an event that is not delivered raises in flush().
                "log_level": 3,
            }
        )

    def send(self, event: Event | Mapping[str, Any]) -> Event:
        """Send one event; raise `InvalidEventError` for an invalid one, or one timed more than
        `events.max_ahead_s` after this machine's clock (the job would reject it)."""
        producer = self._open()
        now = int(time.time())
        if isinstance(event, Event):
            check_received(event, self.rules, now)
        else:
            event = event_from_mapping(dict(event), self.rules, now)
        key, value = str(event.user_id).encode(), event_to_json(event)
        while True:
            try:
                producer.produce(self.topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # the send queue is full: wait for deliveries to make room
                producer.poll(0.1)
        producer.poll(0)  # delivery reports
        self.sent += 1
        return event

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every event sent so far is acknowledged; raise if any was not."""
        waiting = self._open().flush(-1 if timeout_s is None else timeout_s)
        if waiting:
            raise ProducerError(
                f"{waiting} events not yet acknowledged by {self.topic} after {timeout_s} s; "
                "check that Kafka is up (walkstream status)"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            raise ProducerError(
                f"{len(failures)} events were not delivered to {self.topic} "
                f"(first error: {failures[0]}); check that Kafka is up (walkstream status)"
            )

    def _open(self) -> Producer:
        if self._closed:
            raise ProducerError(f"the producer for {self.topic} is closed: send before close()")
        return self._producer

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then drop whatever could not be delivered and shut the client down: a closed
        producer neither retries nor reconnects to a broker that has gone. A second close is a
        no-op."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed = True
            self._producer.purge()
            self._producer.poll(0)  # the purged events' reports, which hold on to this object
            self._producer.close()

    def __enter__(self) -> RatingProducer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class Pacer:
    """When to send event number `index` with event time `event_time`.

    `rate`: a fixed number of events per second. `speedup`: the events' own spacing in event
    time, divided by `speedup`. Neither: as fast as possible.
    """

    rate: float | None = None
    speedup: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.rate is not None and self.speedup is not None:
            raise ValueError("give a rate or a speedup, not both")
        if (self.rate is not None and self.rate <= 0) or (
            self.speedup is not None and self.speedup <= 0
        ):
            raise ValueError("rate and speedup must be positive")
        self._start: float | None = None
        self._first_time = 0

    def wait(self, index: int, event_time: int) -> None:
        if self.rate is None and self.speedup is None:
            return
        now = self.clock()
        if self._start is None:
            self._start, self._first_time = now, event_time
        if self.rate is not None:
            due = self._start + index / self.rate
        else:
            assert self.speedup is not None
            due = self._start + (event_time - self._first_time) / self.speedup
        if due > now:
            self.sleep(due - now)


@dataclass(frozen=True)
class ProduceReport:
    sent: int
    rejected: int
    seconds: float
    summary: str


def ordered_events(columns: EventColumns) -> Iterator[Event]:
    """Events in the order the job needs them: event time, then user, then item."""
    order = np.lexsort((columns.item_id, columns.user_id, columns.event_time))
    rows = zip(
        columns.user_id[order].tolist(),
        columns.item_id[order].tolist(),
        columns.rating[order].tolist(),
        columns.event_time[order].tolist(),
        strict=True,
    )
    return (Event(*fields) for fields in rows)


def produce_events(
    settings: Settings,
    events: Iterable[Event],
    topic: str,
    pacer: Pacer,
    progress: Progress,
    observe: Callable[[Event], None] | None = None,
) -> tuple[int, float]:
    """Send `events` in the order given; call `progress(sent, seconds)` about once a second
    and `observe` after each send. Return how many were sent and how long it took."""
    ensure_topics(settings.kafka, [topic])
    began = last_report = time.monotonic()
    with RatingProducer(settings, topic) as producer:
        for index, event in enumerate(events):
            pacer.wait(index, event.event_time)
            producer.send(event)
            if observe is not None:
                observe(event)
            if time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(producer.sent, last_report - began)
    return producer.sent, time.monotonic() - began


def produce_file(
    settings: Settings,
    path: Path,
    fmt: Format,
    topic: str | None = None,
    pacer: Pacer | None = None,
    report: Report = print,
) -> ProduceReport:
    """Send every valid event of a ratings file in event-time order (ties: user, then item)."""
    columns, load_report = load_events(path, fmt, settings.events)
    ahead = columns.event_time > int(time.time()) + settings.events.max_ahead_s
    summary = load_report.summary()
    if ahead.any():
        summary += (
            f"; {int(ahead.sum()):,} events timed more than events.max_ahead_s after this "
            "machine's clock not sent (event_time_ahead)"
        )
        kept = ~ahead
        columns = columns._replace(
            user_id=columns.user_id[kept],
            item_id=columns.item_id[kept],
            rating=columns.rating[kept],
            event_time=columns.event_time[kept],
        )
    total = len(columns.user_id)

    def progress(sent: int, seconds: float) -> None:
        report(f"  produce: {sent:,}/{total:,} events ({sent / seconds:,.0f}/s)")

    sent, seconds = produce_events(
        settings,
        ordered_events(columns),
        topic or settings.kafka.topics.ratings,
        pacer or Pacer(),
        progress,
    )
    rejected = sum(load_report.rejected.values()) + int(ahead.sum())
    return ProduceReport(sent, rejected, seconds, summary)
