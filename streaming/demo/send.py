"""Sending the events through the producer with progress lines; `--follow` sends them again
and again, each pass later in event time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from streaming.config import Settings
from streaming.core.events import Event
from streaming.demo.observer import Observer
from streaming.producer import Pacer, ordered_events, produce_events
from streaming.rating_files import EventColumns
from streaming.report import Report

__all__ = ["follow", "stream_events"]


def stream_events(
    settings: Settings,
    events: Iterator[Event],
    rate: float | None,
    observer: Observer,
    report: Report,
) -> tuple[int, float]:
    """Send `events`, printing progress every few seconds and each new version."""
    last = {"version": observer.version, "report": 0.0}

    def progress(sent: int, seconds: float) -> None:
        observer.check()
        now = time.monotonic()
        if observer.version != last["version"]:
            last["version"] = observer.version
            report(f"  version {observer.version} published")
        if now - (last["report"] or 0.0) >= 3:
            last["report"] = now
            report(
                f"  {now - observer.began:5.0f}s  sent {sent:,} ({sent / seconds:,.0f}/s); "
                f"{observer.status()}"
            )

    return produce_events(
        settings,
        events,
        settings.kafka.topics.ratings,
        Pacer(rate=rate),
        progress,
        observer.on_event,
    )


def follow(
    settings: Settings,
    columns: EventColumns,
    rate: float | None,
    observer: Observer,
    report: Report,
) -> None:
    """Stream the same events again and again, each pass later in event time, until Ctrl-C."""
    report("demo: --follow: streaming the events again, later in event time; Ctrl-C stops")
    span = int(columns.event_time.max() - columns.event_time.min()) + 1
    shift = span
    try:
        while True:
            events = (
                event._replace(event_time=event.event_time + shift)
                for event in ordered_events(columns)
            )
            stream_events(settings, events, rate, observer, report)
            shift += span
    except KeyboardInterrupt:
        report("demo: Ctrl-C: stopping the job, the trainer and the services the demo started")
