"""What the demo measured (`DemoResult`) and the report it prints: coverage, throughput,
freshness, model lag, quality and the nearest neighbours of the most-rated items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.evaluate import community_precision
from streaming.demo.observer import Observer
from streaming.embeddings.graph import user_sequences
from streaming.embeddings.labels import Communities, neighbour_table
from streaming.embeddings.users import recent_items
from streaming.embeddings.vectors import Embeddings
from streaming.rating_files import EventColumns
from streaming.report import Report
from streaming.store.client import VersionView

__all__ = [
    "DemoResult",
    "demo_result",
    "popular_items",
    "settled_user",
    "show_result",
    "show_user",
]

_SHOW_ITEMS = 4
_SHOW_NEIGHBOURS = 5


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured; printed, and what its test checks."""

    version: int
    items: int
    cold: int
    seen: int
    """Items that occurred in a transition: the items the job has seen."""
    covered: int
    """Of those, items with a vector in the current version."""
    sent: int
    send_seconds: float
    drain_seconds: float
    """From the first event sent until the job had consumed every one."""
    freshness_s: list[float]
    """Per item: first transition sent to Kafka -> first vector in Redis."""
    steady_freshness_s: list[float]
    """The same, for items whose first transition was sent after the first version."""
    model_lag_s: list[float]
    """Per version: publish time minus when the newest event it was trained on was sent."""
    purity: float | None
    """Mean share of an item's 10 nearest neighbours in its planted community."""
    chance: float | None
    plot: Path


def demo_result(
    observer: Observer,
    embeddings: Embeddings,
    streamed: tuple[int, float, float],
    communities: Communities | None,
    plot: Path,
) -> DemoResult:
    sent, send_seconds, drain_seconds = streamed
    purity = chance = None
    if communities:
        purity = community_precision(embeddings, communities, k=10)
        known = [communities[item] for item in embeddings.item_ids.tolist() if item in communities]
        sizes = np.bincount(known)
        # a random other item is in the same community with this probability
        chance = float((sizes * (sizes - 1)).sum() / max(len(known) * (len(known) - 1), 1))
    with observer.lock:
        seen = set(observer.first_sent)
        return DemoResult(
            version=observer.version or 0,
            items=len(embeddings),
            cold=int(embeddings.cold.sum()),
            seen=len(seen),
            covered=len(seen & set(embeddings.item_ids.tolist())),
            sent=sent,
            send_seconds=send_seconds,
            drain_seconds=drain_seconds,
            freshness_s=observer.freshness(),
            steady_freshness_s=observer.freshness(since=observer.first_version_at),
            model_lag_s=list(observer.model_lag_s.values()),
            purity=purity,
            chance=chance,
            plot=plot,
        )


def popular_items(columns: EventColumns, communities: Communities | None) -> list[int]:
    """The most-rated items, one per community when communities are known."""
    counts = np.bincount(columns.item_id)
    chosen: list[int] = []
    groups: set[int] = set()
    for item in np.argsort(-counts, kind="stable").tolist():
        group = communities.get(item) if communities else None
        if group is not None and group in groups:
            continue
        if group is not None:
            groups.add(group)
        chosen.append(item)
        if len(chosen) == _SHOW_ITEMS:
            break
    return chosen


def settled_user(
    columns: EventColumns, high_rating: float, recent_items_limit: int, settled_before: int
) -> tuple[int, list[int]]:
    """The user with the most kept ratings among those whose last one is older than
    `settled_before` (event time: ratings at the very end of a stream wait for newer ones to
    pass the watermark), and their recent items as the job and the trainer keep them."""
    sequences = user_sequences(*columns, high_rating)
    last = sequences.times[np.maximum(sequences.indptr[1:] - 1, 0)]
    lengths = np.where(last < settled_before, sequences.lengths, -1)
    k = int(np.argmax(lengths))
    return int(sequences.users[k]), recent_items(sequences.items_of(k).tolist(), recent_items_limit)


def show_user(view: VersionView, user: int, labels: dict[int, str], report: Report) -> None:
    """A user's recent items and the items nearest to their vector, side by side."""
    recent = view.user_items(user)[-_SHOW_NEIGHBOURS:]
    found = view.recommend(user, _SHOW_NEIGHBOURS)
    lines = [f"user {user} in version {view.version}: recent items (newest last) -> recommended"]
    for k in range(max(len(recent), len(found))):
        left = f"{recent[k]:>7} {labels.get(recent[k], '')[:30]:<30}" if k < len(recent) else ""
        right = (
            f"{found[k][1]:6.3f} {found[k][0]:>7} {labels.get(found[k][0], '')[:30]}"
            if k < len(found)
            else ""
        )
        lines.append(f"  {left:<38}   {right}")
    report("\n".join(lines) + "\n")


def _percentiles(values: list[float], what: str) -> str:
    if not values:
        return "none measured"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:.1f}s, p99 {p99:.1f}s over {len(values):,} {what}"


def show_result(
    result: DemoResult,
    embeddings: Embeddings,
    shown_items: list[int],
    labels: dict[int, str],
    report: Report,
) -> None:
    coverage = result.covered / result.seen if result.seen else 0.0
    lines = [
        "",
        f"version {result.version} in Redis: {result.items:,} items ({result.cold:,} cold, i.e. "
        "neighbour averages of items the model has not trained yet)",
        f"  coverage   {result.covered:,} of the {result.seen:,} items the job has seen have a "
        f"vector ({100 * coverage:.1f}%)",
        f"  events     sent {result.sent:,} in {result.send_seconds:.1f}s "
        f"({result.sent / max(result.send_seconds, 1e-9):,.0f}/s); the job had consumed all of "
        f"them {result.drain_seconds:.1f}s after the first was sent "
        f"({result.sent / max(result.drain_seconds, 1e-9):,.0f}/s)",
        "  freshness  from an item's first transition sent to Kafka until it has a vector in "
        f"Redis: {_percentiles(result.freshness_s, 'items')}",
        f"             items first seen after the first version: "
        f"{_percentiles(result.steady_freshness_s, 'items')}",
        "  model lag  from sending the newest event a version was trained on until the version "
        f"was published: {_percentiles(result.model_lag_s, 'versions')}",
    ]
    if result.purity is not None and result.chance is not None:
        lines.append(
            f"  quality    {result.purity:.2f} of an item's 10 nearest neighbours are in its "
            f"planted community (chance: {result.chance:.2f})"
        )
    lines += ["", "nearest neighbours (cosine) of the most-rated items:"]
    lines.append(neighbour_table(embeddings, shown_items, labels, _SHOW_NEIGHBOURS))
    report("\n".join(lines) + "\n")
