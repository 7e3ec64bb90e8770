"""`walkstream plot`: a picture of the current embeddings and of how versions evolved.

Left: a 2-D projection (PCA) of the current version's vectors, coloured by community or
genre when a labels file says them; cold (neighbour-average) items are marked. Right: the
timeline of versions and items, and, when the demo measured them, coverage and freshness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from streaming.embeddings.vectors import Embeddings
from streaming.store import VersionView

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TimelinePoint", "draw", "project", "version_embeddings"]

_MAX_GROUPS = 20  # the rest is drawn grey as "other"
_MAX_POINTS = 20_000


@dataclass(frozen=True)
class TimelinePoint:
    """The state of the system at `seconds` after the start of a run."""

    seconds: float
    version: int | None
    items: int
    cold: int | None = None
    coverage: float | None = None
    """Share of the items the job has seen that have a vector."""
    freshness_p50_s: float | None = None
    freshness_p99_s: float | None = None
    """Seconds from an item's first transition being sent until it had a vector."""
    model_lag_s: float | None = None
    """The current version's publish time minus when its newest training event was sent."""


def version_embeddings(view: VersionView) -> Embeddings:
    """All vectors of a published version, cold ones marked."""
    ids, vectors = view.all_vectors()
    cold = view.cold(ids)
    return Embeddings(
        np.array(ids, dtype=np.int64), vectors, np.array([item in cold for item in ids], bool)
    )


def project(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The unit vectors' first two principal components."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    centred = unit - unit.mean(axis=0)
    _, _, basis = np.linalg.svd(centred, full_matrices=False)
    return np.asarray(centred @ basis[:2].T)


def draw(
    out: Path,
    embeddings: Embeddings,
    groups: Mapping[int, str],
    timeline: Sequence[TimelinePoint],
    title: str,
) -> Path:
    """Write the PNG to `out` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(15, 7.5), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=(1.25, 1))
    _scatter(figure.add_subplot(grid[:, 0]), embeddings, groups)
    _versions(figure.add_subplot(grid[0, 1]), timeline)
    _quality(figure.add_subplot(grid[1, 1]), timeline)
    figure.suptitle(title, fontsize=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def _scatter(ax: Axes, embeddings: Embeddings, groups: Mapping[int, str]) -> None:
    import matplotlib.pyplot as plt

    keep = np.random.default_rng(0).permutation(len(embeddings))[:_MAX_POINTS]
    ids, points = embeddings.item_ids[keep], project(embeddings.vectors[keep])
    cold = embeddings.cold[keep]
    names = [groups.get(int(item), "") for item in ids.tolist()]
    counts: dict[str, int] = {}
    for name in names:
        if name:
            counts[name] = counts.get(name, 0) + 1
    biggest = sorted(counts, key=lambda name: -counts[name])[:_MAX_GROUPS]
    shown = sorted(biggest, key=_natural)
    colours = plt.get_cmap("tab20")
    label = np.array([shown.index(n) if n in shown else -1 for n in names])
    other = label < 0
    if other.any():
        ax.scatter(
            points[other, 0], points[other, 1], s=6, c="#c8c8c8", linewidths=0, label="other"
        )
    for index, name in enumerate(shown):
        rows = label == index
        ax.scatter(
            points[rows, 0],
            points[rows, 1],
            s=8,
            color=colours(index % 20),
            linewidths=0,
            label=name,
        )
    if cold.any():
        ax.scatter(
            points[cold, 0],
            points[cold, 1],
            s=30,
            facecolors="none",
            edgecolors="black",
            linewidths=0.6,
            label=f"cold ({int(cold.sum()):,})",
        )
    ax.set_title(f"{len(embeddings):,} items, PCA of unit vectors (dim {embeddings.dim})")
    ax.set_xticks([])
    ax.set_yticks([])
    if shown or cold.any():
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, markerscale=2)


def _natural(name: str) -> tuple[str, int]:
    """ "community 2" before "community 10"."""
    head, _, tail = name.rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def _versions(ax: Axes, timeline: Sequence[TimelinePoint]) -> None:
    seconds = [point.seconds for point in timeline]
    ax.step(seconds, [point.items for point in timeline], where="post", label="items")
    if any(point.cold is not None for point in timeline):
        cold = [point.cold or 0 for point in timeline]
        ax.step(seconds, cold, where="post", label="cold items")
    ax.set_ylabel("items with a vector")
    ax.set_title("versions")
    ax.grid(alpha=0.3)
    switches = [
        (point.seconds, point.version)
        for before, point in zip([None, *timeline], timeline, strict=False)
        if point.version is not None and (before is None or before.version != point.version)
    ]
    for when, version in switches:
        ax.axvline(when, color="grey", linewidth=0.6, linestyle=":")
        ax.annotate(
            f"v{version}",
            (when, 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            ha="left",
            va="top",
            rotation=90,
        )
    ax.legend(loc="lower right", fontsize=8)


def _quality(ax: Axes, timeline: Sequence[TimelinePoint]) -> None:
    ax.set_xlabel("seconds since start")
    measured = [point for point in timeline if point.coverage is not None]
    if not measured:
        ax.text(
            0.5,
            0.5,
            "coverage and freshness are measured by `walkstream demo`",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
        ax.set_axis_off()
        return
    seconds = [point.seconds for point in measured]
    ax.plot(seconds, [100 * (point.coverage or 0) for point in measured], color="tab:green")
    ax.set_ylabel("coverage of seen items (%)", color="tab:green")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    fresh = [point for point in measured if point.freshness_p50_s is not None]
    if fresh:
        right = ax.twinx()
        when = [point.seconds for point in fresh]
        right.plot(
            when, [p.freshness_p50_s or 0.0 for p in fresh], color="tab:purple", label="item p50"
        )
        right.plot(
            when,
            [p.freshness_p99_s or 0.0 for p in fresh],
            color="tab:purple",
            linestyle="--",
            label="item p99",
        )
        lagged = [point for point in fresh if point.model_lag_s is not None]
        right.step(
            [point.seconds for point in lagged],
            [point.model_lag_s or 0.0 for point in lagged],
            where="post",
            color="tab:brown",
            label="model lag",
        )
        right.set_ylabel("seconds", color="tab:purple")
        right.set_ylim(bottom=0)
        right.legend(loc="lower right", fontsize=8)
    ax.set_title(
        "coverage of seen items; freshness: first transition sent -> vector in Redis", fontsize=10
    )
