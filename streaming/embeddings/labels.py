"""Readable names for items, and the nearest-neighbour table that shows them.

Labels come from a MovieLens `movies.csv` (titles, first genre) or a synthetic `items.csv`
(planted communities), found as the given file or next to a ratings file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streaming.embeddings.vectors import Embeddings
from streaming.errors import DataError

__all__ = [
    "ITEMS_HEADER",
    "Communities",
    "item_groups",
    "item_labels",
    "load_communities",
    "neighbour_table",
    "read_pairs",
]

ITEMS_HEADER = "item_id,community"

Communities = dict[int, int]
"""Item id -> its planted community (a synthetic `items.csv`)."""


def read_pairs(path: Path, header: str) -> Iterator[tuple[str, str]]:
    """The two fields of each row of a small ASCII csv that starts with `header`."""
    with path.open(encoding="ascii") as lines:
        first = lines.readline().rstrip("\n")
        if first != header:
            raise ValueError(f"{path}: expected header {header!r}, got {first!r}")
        for number, line in enumerate(lines, start=2):
            fields = line.rstrip("\n").split(",")
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 2 fields, got {len(fields)}")
            yield fields[0], fields[1]


def load_communities(path: Path) -> Communities:
    """Read a synthetic items.csv: item id -> community."""
    result: Communities = {}
    for item, community in read_pairs(path, ITEMS_HEADER):
        result[int(item)] = int(community)
    return result


def _labels_file(path: Path) -> Path | None:
    """A MovieLens `movies.csv` or a synthetic `items.csv`: `path` itself or next to it."""
    if not path.exists():
        raise DataError(f"{path} does not exist: check the path of the labels or ratings file")
    names = {"movies.csv", "items.csv"}
    candidates = [path] if path.name in names else [path.with_name(name) for name in names]
    for candidate in sorted(candidates, key=lambda c: c.name != "movies.csv"):
        if candidate.is_file():
            return candidate
    return None


def _movies(path: Path) -> list[tuple[int, str, str]]:
    """(movieId, title, first genre) of each row of a MovieLens movies.csv."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [
                (int(row["movieId"]), row["title"], row["genres"].split("|")[0])
                for row in csv.DictReader(handle)
            ]
    except (KeyError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"{path} is not a MovieLens movies.csv ({exc!r}): give one with the columns "
            "movieId,title,genres, or leave out --labels"
        ) from None


def item_labels(path: Path) -> dict[int, str]:
    """Readable names for items (movie titles, planted communities); {} without a file."""
    found = _labels_file(path)
    if found is None:
        return {}
    if found.name == "movies.csv":
        return {movie: title for movie, title, _ in _movies(found)}
    return {item: f"community {c}" for item, c in load_communities(found).items()}


def item_groups(path: Path) -> dict[int, str]:
    """What to colour items by: a movie's first genre, or its planted community."""
    found = _labels_file(path)
    if found is None:
        return {}
    if found.name == "movies.csv":
        return {movie: genre for movie, _, genre in _movies(found)}
    return {item: f"community {c}" for item, c in load_communities(found).items()}


def neighbour_table(
    embeddings: Embeddings, items: list[int], labels: dict[int, str], k: int
) -> str:
    """Each of `items` with its `k` nearest items by cosine, labelled, cold ones flagged."""
    vectors = embeddings.vectors / np.maximum(
        np.linalg.norm(embeddings.vectors, axis=1, keepdims=True), 1e-12
    )
    row_of = {item: row for row, item in enumerate(embeddings.item_ids.tolist())}
    lines = []
    for item in items:
        if item not in row_of:
            continue
        scores = vectors @ vectors[row_of[item]]
        scores[row_of[item]] = -np.inf
        top = np.argsort(-scores)[: min(k, len(scores) - 1)]  # not the item itself
        lines.append(f"{item:>8}  {labels.get(item, '')[:60]}")
        for row in top:
            other = int(embeddings.item_ids[row])
            flag = " (cold)" if embeddings.cold[row] else ""
            lines.append(
                f"{'':>10}{scores[row]:6.3f}  {other:>8}  {labels.get(other, '')[:50]}{flag}"
            )
    return "\n".join(lines)
