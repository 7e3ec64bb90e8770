"""Synthetic MovieLens-style ratings with planted ground truth.

Items are split into communities and users like a few communities, so a good embedding must
put same-community items together: that is what `items.csv` and `users.csv` let evaluation
check. The shape of real data (heavy-tailed user activity, Zipf item popularity, ratings that
follow taste, interleaved per-user time lines) is kept so the pipeline is exercised honestly.

Generation works on chunks of users with vectorised NumPy, so memory grows with the number of
users and items, never with the number of events.

Model, per user:

- tastes: 1..`tastes` distinct communities (uniform count; communities are mildly
  Zipf-popular, community 0 the most liked);
- activity: `events` split over users by lognormal weights, at least 3 each; a user rates at
  most as many items as their taste communities hold (the excess goes to other users), unless
  the whole stream cannot fit that way, then at most every item (the overflow is off-taste);
- each event is off-taste (uniform over items outside the user's communities) with probability
  `noise`, otherwise it is in one of the user's communities (chosen uniformly) and picks an item
  by Zipf popularity rank;
- a user never rates an item twice: items are drawn without replacement (exact successive
  sampling), so a popular item already rated gives way to the next draw;
- ratings are half-stars; on-taste mostly 4-5, off-taste mostly 0.5-3.

Two options make the data move in event time, as real feeds do:

- launches (`launch_share`): that share of each community's items is launched during the
  year users start in, evenly over its days, each at a random second of its day; the rest
  are there from the start and are what the model above draws from. An on-taste rating goes,
  with probability 1/2, to an item of its community launched within the day before it (one
  drawn uniformly, when there is one): a launched item's early ratings come from the users
  who like its community, so they carry its meaning. `launches.csv` lists the launch times.
- drift (`drift_share`, `drift_at`): from `drift_at` of that year on, a share of the items
  present from the start move to another community: the items of a community a user rates
  afterwards are its members after the move. Moved items are picked at random, at most half
  of them from any one community, and rotated so that each lands in another community (the
  sizes stay the same). `drift.csv` lists every moved item's community after the move;
  `items.csv` keeps the communities before it.

A rating that either option would make a repeat of an item the user rated is left as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from streaming.embeddings.labels import ITEMS_HEADER, read_pairs

__all__ = [
    "SyntheticResult",
    "SyntheticSpec",
    "generate",
    "load_drift",
    "load_tastes",
]

Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]
Bytes = NDArray[np.uint8]

RATINGS_HEADER = "userId,movieId,rating,timestamp"
USERS_HEADER = "user_id,tastes"
LAUNCHES_HEADER = "item_id,launch_time"
DRIFT_HEADER = "item_id,community_after"

# Community popularity (for tastes) is Zipf with this exponent: some genres draw more users.
_TASTE_EXPONENT = 0.5
# Sigma of the lognormal user-activity weights: a MovieLens-like long tail of heavy raters.
_ACTIVITY_SIGMA = 1.0
_MIN_EVENTS_PER_USER = 3
# Users start within this window after `start_time`; gaps are lognormal, minutes to days.
_START_WINDOW_S = 365 * 24 * 3600
_DAY_S = 24 * 3600
# An on-taste rating goes to an item its community launched within this window before it,
# with this probability (when the community launched one).
_LAUNCH_WINDOW_S = _DAY_S
_LAUNCH_PICK = 0.5
_GAP_MEDIAN_S = 900.0
_GAP_SIGMA = 2.0
# Half-star ratings as ints 1..10 (0.5..5.0) and their probabilities.
_ON_TASTE_RATINGS = ((6, 0.04), (7, 0.12), (8, 0.32), (9, 0.22), (10, 0.30))
_OFF_TASTE_RATINGS = (
    (1, 0.07),
    (2, 0.10),
    (3, 0.10),
    (4, 0.18),
    (5, 0.17),
    (6, 0.23),
    (7, 0.10),
    (8, 0.05),
)
# Events per chunk of users, and the largest key matrix built at once: the memory bound.
_CHUNK_EVENTS = 500_000
_KEY_BUDGET = 1 << 22
_RENDER_ROWS = 1 << 17
# A row's items are drawn by sorting random keys over its whole community when rejection
# sampling would need more than this fraction of the community's size in draws.
_DENSE_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """What to generate; the defaults are small enough for tests."""

    users: int = 2_000
    """Number of users (ids 1..users)."""
    items: int = 1_000
    """Number of items (ids 1..items, shuffled with respect to community)."""
    communities: int = 20
    """Number of planted communities; items are split into (nearly) equal parts."""
    events: int = 50_000
    """Total rating events, exactly; at least 3 per user and at most `items` per user."""
    zipf_exponent: float = 1.0
    """Skew of item popularity within a community (0 is uniform)."""
    tastes: int = 3
    """Most communities a user likes; each user draws 1..tastes of them."""
    noise: float = 0.1
    """Probability that an event is a random off-taste item."""
    start_time: int = 1_600_000_000
    """Epoch seconds; every event is at or after it."""
    launch_share: float = 0.0
    """Share of each community's items launched during the year users start in, evenly over
    its days (rounded down per community: every community keeps an item from the start)."""
    drift_share: float = 0.0
    """Share of all items that move to another community at `drift_at` (taken from the
    items present from the start)."""
    drift_at: float = 0.5
    """When the drift happens, as a fraction of the year users start in."""
    seed: int = 0
    """Seed of `numpy.random.default_rng`; same spec and seed give byte-identical files."""

    @property
    def drift_time(self) -> int:
        """The event time at which the drift's items move."""
        return self.start_time + round(self.drift_at * _START_WINDOW_S)

    def __post_init__(self) -> None:
        for name in ("users", "items", "communities", "events", "tastes"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.items < _MIN_EVENTS_PER_USER:
            raise ValueError(
                f"items must be at least {_MIN_EVENTS_PER_USER} (each user rates that many "
                f"distinct items), got {self.items}"
            )
        if self.communities > self.items:
            raise ValueError(
                f"communities must be at most items ({self.items}), got {self.communities}"
            )
        if self.events < _MIN_EVENTS_PER_USER * self.users:
            raise ValueError(
                f"events must be at least {_MIN_EVENTS_PER_USER} per user "
                f"({_MIN_EVENTS_PER_USER * self.users}), got {self.events}"
            )
        if self.events > self.users * self.items:
            raise ValueError(
                f"events must be at most users * items ({self.users * self.items}): a user "
                f"rates an item once, got {self.events}"
            )
        if not (math.isfinite(self.zipf_exponent) and self.zipf_exponent >= 0):
            raise ValueError(f"zipf_exponent must be finite and >= 0, got {self.zipf_exponent}")
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")
        if self.start_time < 0:
            raise ValueError(f"start_time must be >= 0, got {self.start_time}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0 <= self.launch_share < 1:
            raise ValueError(f"launch_share must be in [0, 1), got {self.launch_share}")
        if not 0 <= self.drift_share <= 0.5:
            raise ValueError(f"drift_share must be in [0, 0.5], got {self.drift_share}")
        if not 0 <= self.drift_at <= 1:
            raise ValueError(f"drift_at must be in [0, 1], got {self.drift_at}")
        present = self.items - int(_launched_per_community(self).sum())
        if self.events > self.users * present:
            raise ValueError(
                f"events must be at most users * items present from the start "
                f"({self.users * present}): a user rates an item once, got {self.events}"
            )
        if self.drift_share > 0 and self.communities < 2:
            raise ValueError("drift needs at least 2 communities to move items between")
        if round(self.drift_share * self.items) > present:
            raise ValueError(
                f"drift_share moves {round(self.drift_share * self.items)} items, more than "
                f"the {present} present from the start"
            )


@dataclass(frozen=True, slots=True)
class SyntheticResult:
    """Where the data set went and how big it is."""

    ratings_path: Path
    items_path: Path
    users_path: Path
    spec_path: Path
    events: int
    users: int
    items: int
    communities: int


@dataclass(frozen=True, slots=True)
class _Layout:
    """Items laid out by community, most popular first; `order[position]` is an item id."""

    order: Ints
    offset: Ints  # first position of each community
    size: Ints  # items in each community
    community_of_item: Ints  # indexed by item id (index 0 unused)


@dataclass(frozen=True, slots=True)
class _Zipf:
    """Rank sampling tables for one community size."""

    weights: Floats
    cdf: Floats
    # expected_draws[x]: worst-case expected draws to get x distinct ranks by rejection.
    expected_draws: Floats


@dataclass(frozen=True, slots=True)
class _Users:
    """Per-user state for the whole population: O(users) memory."""

    counts: Ints
    tastes: Ints  # users x max_tastes, -1 padded, ascending
    n_tastes: Ints
    taste_capacity: Ints  # items in the user's taste communities
    start: Ints


def generate(
    out_dir: Path,
    spec: SyntheticSpec,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticResult:
    """Write ratings.csv, items.csv, users.csv and spec.json into `out_dir`.

    Each file is written under a temporary name and renamed when complete; spec.json comes
    last, so its presence marks a finished data set.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    layout = _layout(rng, spec)
    launches = _launches(rng, spec, layout) if spec.launch_share > 0 else None
    present = layout if launches is None else _without(layout, launches.items)
    users = _users(rng, spec, present)
    zipf = {int(s): _zipf(int(s), spec.zipf_exponent) for s in np.unique(present.size)}
    moves = _moves(rng, spec, present) if spec.drift_share > 0 else None

    paths = {name: out_dir / f"{name}.csv" for name in ("ratings", "items", "users")}
    spec_path = out_dir / "spec.json"
    for extra in ("launches", "drift"):  # a rerun without the option leaves none behind
        (out_dir / f"{extra}.csv").unlink(missing_ok=True)

    spec_path.unlink(missing_ok=True)  # a rerun must not look finished before it is
    ratings_tmp = _tmp(paths["ratings"])
    written = 0
    finished = False
    try:
        with ratings_tmp.open("wb") as out:
            out.write(f"{RATINGS_HEADER}\n".encode())
            for lo, hi in _chunks(users.counts):
                user, item, rating, time, on_taste = _chunk_events(
                    rng, spec, present, users, zipf, lo, hi
                )
                if moves is not None:
                    item = _unrepeated(user, time, item, _moved(moves, item, time))
                if launches is not None:
                    launched = _launched(rng, launches, present, item, time, on_taste)
                    item = _unrepeated(user, time, item, launched)
                out.write(_ratings_bytes(user, item, rating, time))
                written += len(item)
                if progress is not None:
                    progress(written, spec.events)
        finished = True
    finally:
        if not finished:
            ratings_tmp.unlink(missing_ok=True)
    if written != spec.events:  # an internal invariant; cheap to check, costly to miss
        raise RuntimeError(f"generated {written} events, spec asks for {spec.events}")

    _write_atomic(paths["items"], f"{ITEMS_HEADER}\n".encode() + _items_bytes(layout))
    _write_atomic(paths["users"], f"{USERS_HEADER}\n".encode() + _users_bytes(users))
    if launches is not None:
        _write_atomic(
            out_dir / "launches.csv",
            f"{LAUNCHES_HEADER}\n".encode() + _pairs_bytes(launches.items, launches.times),
        )
    if moves is not None:
        _write_atomic(
            out_dir / "drift.csv",
            f"{DRIFT_HEADER}\n".encode() + _pairs_bytes(moves.items, moves.community_after),
        )
    os.replace(ratings_tmp, paths["ratings"])
    spec_json = json.dumps(dataclasses.asdict(spec), indent=2, sort_keys=True) + "\n"
    _write_atomic(spec_path, spec_json.encode())
    return SyntheticResult(
        ratings_path=paths["ratings"],
        items_path=paths["items"],
        users_path=paths["users"],
        spec_path=spec_path,
        events=written,
        users=spec.users,
        items=spec.items,
        communities=spec.communities,
    )


def load_drift(path: Path) -> dict[int, int]:
    """Read drift.csv back: moved item id -> its community after the move."""
    return {int(item): int(community) for item, community in read_pairs(path, DRIFT_HEADER)}


def load_tastes(path: Path) -> dict[int, tuple[int, ...]]:
    """Read users.csv back: user id -> the communities that user likes."""
    result: dict[int, tuple[int, ...]] = {}
    for user, tastes in read_pairs(path, USERS_HEADER):
        result[int(user)] = tuple(int(c) for c in tastes.split(";"))
    return result


# --- population ---------------------------------------------------------------------------


def _layout(rng: np.random.Generator, spec: SyntheticSpec) -> _Layout:
    base, extra = divmod(spec.items, spec.communities)
    size = np.full(spec.communities, base, dtype=np.int64)
    size[:extra] += 1
    offset = np.zeros(spec.communities, dtype=np.int64)
    offset[1:] = np.cumsum(size)[:-1]
    order = (rng.permutation(spec.items) + 1).astype(np.int64)
    community_of_item = np.zeros(spec.items + 1, dtype=np.int64)
    community_of_item[order] = np.repeat(np.arange(spec.communities, dtype=np.int64), size)
    return _Layout(order=order, offset=offset, size=size, community_of_item=community_of_item)


def _zipf(size: int, exponent: float) -> _Zipf:
    weights = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    weights /= weights.sum()
    cdf = np.cumsum(weights)
    # Tail mass beyond the top j ranks, summed from the end so it stays accurate when tiny.
    tail = np.cumsum(weights[::-1])[::-1]
    expected = np.zeros(size + 1, dtype=np.float64)
    expected[1:] = np.cumsum(1.0 / tail)
    return _Zipf(weights=weights, cdf=cdf, expected_draws=expected)


def _users(rng: np.random.Generator, spec: SyntheticSpec, layout: _Layout) -> _Users:
    max_tastes = min(spec.tastes, spec.communities)
    tastes = _draw_tastes(rng, spec.users, spec.communities, max_tastes)
    n_tastes = rng.integers(1, max_tastes + 1, size=spec.users, dtype=np.int64)
    tastes[np.arange(max_tastes)[None, :] >= n_tastes[:, None]] = -1
    tastes = np.sort(np.where(tastes < 0, spec.communities, tastes), axis=1)
    tastes[tastes == spec.communities] = -1
    sizes = np.append(layout.size, 0)  # index -1 reads the trailing 0
    capacity = sizes[tastes].sum(axis=1)

    weights = rng.lognormal(0.0, _ACTIVITY_SIGMA, size=spec.users)
    items = int(layout.order.size)
    soft_cap = np.minimum(np.maximum(capacity, _MIN_EVENTS_PER_USER), items)
    cap = soft_cap if soft_cap.sum() >= spec.events else np.full(spec.users, items)
    counts = _allocate(spec.events, weights, cap.astype(np.int64))
    start = spec.start_time + rng.integers(0, _START_WINDOW_S, size=spec.users, dtype=np.int64)
    return _Users(
        counts=counts,
        tastes=tastes.astype(np.int64),
        n_tastes=n_tastes,
        taste_capacity=capacity.astype(np.int64),
        start=start,
    )


def _draw_tastes(rng: np.random.Generator, users: int, communities: int, max_tastes: int) -> Ints:
    """Distinct Zipf-weighted communities per user (Gumbel top-k), in bounded batches."""
    log_weights = -_TASTE_EXPONENT * np.log(np.arange(1, communities + 1, dtype=np.float64))
    out = np.empty((users, max_tastes), dtype=np.int64)
    batch = max(1, _KEY_BUDGET // communities)
    for lo in range(0, users, batch):
        hi = min(users, lo + batch)
        keys = rng.gumbel(size=(hi - lo, communities)) + log_weights
        top = np.argpartition(-keys, max_tastes - 1, axis=1)[:, :max_tastes]
        # Best key first, so a user's first k columns are a weighted draw of k communities.
        by_key = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        out[lo:hi] = np.take_along_axis(top, by_key, axis=1)
    return out


def _allocate(total: int, weights: Floats, cap: Ints) -> Ints:
    """Split `total` in proportion to `weights`, at least 3 and at most `cap` each.

    Water-filling: find lambda with sum(min(room, lambda * w)) == extra, then round by
    largest remainder (never past a cap).
    """
    room = (cap - _MIN_EVENTS_PER_USER).astype(np.float64)
    extra = total - _MIN_EVENTS_PER_USER * len(weights)
    ratio = room / weights
    by_ratio = np.argsort(ratio, kind="stable")
    ratio_sorted = ratio[by_ratio]
    capped_room = np.cumsum(room[by_ratio])
    free_weight = weights.sum() - np.cumsum(weights[by_ratio])
    # filled[j]: allocation when lambda equals the j-th smallest ratio.
    filled = capped_room + ratio_sorted * free_weight
    j = int(np.searchsorted(filled, extra, side="left"))
    done_room = capped_room[j - 1] if j > 0 else 0.0
    done_weight = free_weight[j - 1] if j > 0 else weights.sum()
    lam = (extra - done_room) / done_weight if done_weight > 0 else 0.0
    share = np.minimum(room, lam * weights)
    floor = np.floor(share)
    deficit = extra - int(floor.sum())
    fraction = np.where(floor < room, share - floor, -1.0)
    winners = np.argsort(-fraction, kind="stable")[:deficit]
    floor[winners] += 1
    counts: Ints = floor.astype(np.int64) + _MIN_EVENTS_PER_USER
    return counts


def _chunks(counts: Ints) -> Iterator[tuple[int, int]]:
    cumulative = np.cumsum(counts)
    lo = 0
    while lo < len(counts):
        before = int(cumulative[lo - 1]) if lo else 0
        hi = int(np.searchsorted(cumulative, before + _CHUNK_EVENTS, side="right"))
        hi = max(hi, lo + 1)
        yield lo, hi
        lo = hi


# --- launches and drift -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Launches:
    """Launched items sorted by (community, launch time)."""

    items: Ints
    times: Ints
    start: int  # the spec's start_time
    keys: Ints  # community * _KEY_SPAN + (time - start), ascending


@dataclass(frozen=True, slots=True)
class _Moves:
    """Drift: after `time`, a rating of `items[k]`'s slot goes to `replacement[k]`."""

    time: int
    items: Ints  # moved items, ascending
    replacement: Ints
    community_after: Ints


_KEY_SPAN = 1 << 40


def _launched_per_community(spec: SyntheticSpec) -> Ints:
    base, extra = divmod(spec.items, spec.communities)
    size = np.full(spec.communities, base, dtype=np.int64)
    size[:extra] += 1
    launched: Ints = np.floor(spec.launch_share * size).astype(np.int64)
    return launched


def _launches(rng: np.random.Generator, spec: SyntheticSpec, layout: _Layout) -> _Launches:
    """Random items of each community, launched evenly over the days of the start window."""
    counts = _launched_per_community(spec)
    picked = [
        layout.order[offset + rng.permutation(size)[:count]]
        for offset, size, count in zip(layout.offset, layout.size, counts, strict=True)
    ]
    items = _concat(picked)
    days = _START_WINDOW_S // _DAY_S
    day = np.floor(rng.permutation(len(items)) * days / max(len(items), 1)).astype(np.int64)
    times = spec.start_time + day * _DAY_S + rng.integers(0, _DAY_S, size=len(items))
    keys = layout.community_of_item[items] * _KEY_SPAN + (times - spec.start_time)
    order = np.argsort(keys, kind="stable")
    return _Launches(items[order], times[order], spec.start_time, keys[order])


def _without(layout: _Layout, items: Ints) -> _Layout:
    """The layout without `items`; the others keep their order (their popularity ranks)."""
    keep = ~np.isin(layout.order, items)
    community = layout.community_of_item[layout.order]
    size = np.bincount(community[keep], minlength=len(layout.size)).astype(np.int64)
    offset = np.zeros(len(size), dtype=np.int64)
    offset[1:] = np.cumsum(size)[:-1]
    return _Layout(layout.order[keep], offset, size, layout.community_of_item)


def _moves(rng: np.random.Generator, spec: SyntheticSpec, layout: _Layout) -> _Moves:
    """Random items, at most half from one community, rotated so each moves to another."""
    count = round(spec.drift_share * spec.items)
    items = rng.choice(layout.order, size=count, replace=False)
    items = items[np.argsort(layout.community_of_item[items], kind="stable")]
    communities = layout.community_of_item[items]
    while len(items) and 2 * np.bincount(communities).max() > len(items):
        drop = np.flatnonzero(communities == np.bincount(communities).argmax())[-1]
        items, communities = np.delete(items, drop), np.delete(communities, drop)
    shift = int(np.bincount(communities).max()) if len(items) else 0
    # The slot of items[k] (in communities[k]) holds items[k + shift] after the move, an item
    # of another community, which is in communities[k] from then on.
    order = np.argsort(items)
    return _Moves(
        time=spec.drift_time,
        items=items[order],
        replacement=np.roll(items, -shift)[order],
        community_after=np.roll(communities, shift)[order],
    )


def _moved(moves: _Moves, item: Ints, time: Ints) -> Ints:
    """`item`, with the ratings at or after the drift going to the slot's new holder."""
    if len(moves.items) == 0:
        return item
    at = np.minimum(np.searchsorted(moves.items, item), len(moves.items) - 1)
    hit = (time >= moves.time) & (moves.items[at] == item)
    return np.where(hit, moves.replacement[at], item)


def _launched(
    rng: np.random.Generator,
    launches: _Launches,
    layout: _Layout,
    item: Ints,
    time: Ints,
    on_taste: Bools,
) -> Ints:
    """`item`, with on-taste ratings sent, with probability `_LAUNCH_PICK`, to an item of
    their community launched within `_LAUNCH_WINDOW_S` before them (drawn uniformly)."""
    if len(launches.items) == 0:
        return item
    key = layout.community_of_item[item] * _KEY_SPAN + (time - launches.start)
    first = np.searchsorted(launches.keys, key - _LAUNCH_WINDOW_S, side="right")
    last = np.searchsorted(launches.keys, key, side="right")
    picked = first + np.floor(rng.random(len(item)) * (last - first)).astype(np.int64)
    use = on_taste & (last > first) & (rng.random(len(item)) < _LAUNCH_PICK)
    return np.where(use, launches.items[np.minimum(picked, len(launches.items) - 1)], item)


def _unrepeated(user: Ints, time: Ints, before: Ints, after: Ints) -> Ints:
    """`after`, except that a changed rating that would repeat an item its user rated keeps
    its `before` item (`before` never repeats one), until no user repeats an item."""
    item = after.copy()
    while True:
        order = np.lexsort((time, item, user))
        same = (user[order][1:] == user[order][:-1]) & (item[order][1:] == item[order][:-1])
        clash = np.zeros(len(item), dtype=np.bool_)
        clash[order[1:][same]] = True
        clash[order[:-1][same]] = True
        revert = clash & (item != before)
        if not revert.any():
            return item
        item[revert] = before[revert]


# --- events -------------------------------------------------------------------------------


def _chunk_events(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    layout: _Layout,
    users: _Users,
    zipf: dict[int, _Zipf],
    lo: int,
    hi: int,
) -> tuple[Ints, Ints, Ints, Ints, Bools]:
    """Events of users lo..hi-1: (user id, item id, half-stars 1..10, time, on taste),
    user-then-time."""
    n = users.counts[lo:hi]
    tastes = users.tastes[lo:hi]
    capacity = users.taste_capacity[lo:hi]
    off_pool = layout.order.size - capacity

    noisy = rng.binomial(n, spec.noise).astype(np.int64)
    noisy = np.clip(noisy, n - capacity, off_pool)  # overflow past the tastes is off-taste
    per_taste = _split_over_tastes(rng, n - noisy, tastes, users.n_tastes[lo:hi], layout.size)

    taste_rows = np.flatnonzero(per_taste.ravel() > 0)
    row_user = taste_rows // tastes.shape[1]
    row_community = tastes.ravel()[taste_rows]
    row_count = per_taste.ravel()[taste_rows]
    on_user, on_position = _on_taste(rng, layout, zipf, row_user, row_community, row_count)

    noise_rows = np.flatnonzero(noisy > 0)
    off_user, off_position = _off_taste(
        rng, layout, tastes[noise_rows], off_pool[noise_rows], noisy[noise_rows]
    )
    off_user = noise_rows[off_user]

    user = np.concatenate([on_user, off_user])
    item = layout.order[np.concatenate([on_position, off_position])]
    on_taste = np.zeros(len(user), dtype=np.bool_)
    on_taste[: len(on_user)] = True

    # Random order within each user, then times that increase along it.
    tiebreak = rng.integers(0, 1 << 32, size=len(user), dtype=np.int64)
    shuffle = np.argsort((user << 32) | tiebreak, kind="stable")
    user, item, on_taste = user[shuffle], item[shuffle], on_taste[shuffle]
    ratings = _ratings(rng, on_taste)
    gaps = np.floor(rng.lognormal(math.log(_GAP_MEDIAN_S), _GAP_SIGMA, size=len(user)))
    gaps = gaps.astype(np.int64)
    first = np.zeros(len(n), dtype=np.int64)
    first[1:] = np.cumsum(n)[:-1]
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    times = users.start[lo:hi][user] + elapsed - elapsed[first][user]
    return user + lo + 1, item, ratings, times, on_taste


def _split_over_tastes(
    rng: np.random.Generator, on: Ints, tastes: Ints, n_tastes: Ints, size: Ints
) -> Ints:
    """Split each user's on-taste count uniformly over their tastes, within community sizes."""
    rows, width = tastes.shape
    out = np.zeros((rows, width), dtype=np.int64)
    left = on.copy()
    for j in range(width):
        share = np.where(j < n_tastes, 1.0 / np.maximum(n_tastes - j, 1), 0.0)
        out[:, j] = rng.binomial(left, share)
        left -= out[:, j]
    room = np.where(tastes >= 0, size[tastes], 0)
    surplus = np.maximum(out - room, 0).sum(axis=1)
    out = np.minimum(out, room)
    for j in range(width):  # the total always fits: on <= capacity
        give = np.minimum(room[:, j] - out[:, j], surplus)
        out[:, j] += give
        surplus -= give
    return out


def _on_taste(
    rng: np.random.Generator,
    layout: _Layout,
    zipf: dict[int, _Zipf],
    row_user: Ints,
    row_community: Ints,
    row_count: Ints,
) -> tuple[Ints, Ints]:
    """Distinct Zipf-popular items per (user, community) row: (user, item position) per event."""
    users: list[Ints] = []
    positions: list[Ints] = []
    row_size = layout.size[row_community]
    for size, table in zipf.items():
        in_size = row_size == size
        cost = table.expected_draws[np.minimum(row_count, size)]
        dense = in_size & (cost > size * _DENSE_FRACTION)
        sparse = in_size & ~dense
        rows = np.flatnonzero(dense)
        if rows.size:
            sizes = np.full(len(rows), size, dtype=np.int64)
            slot_row, rank = _distinct_by_keys(rng, row_count[rows], sizes, table.weights)
            users.append(row_user[rows][slot_row])
            positions.append(layout.offset[row_community[rows]][slot_row] + rank)
        rows = np.flatnonzero(sparse)
        if rows.size:
            slot_row = np.repeat(np.arange(len(rows), dtype=np.int64), row_count[rows])
            rank = _distinct_by_rejection(slot_row, size, _zipf_draw(rng, table.cdf))
            users.append(row_user[rows][slot_row])
            positions.append(layout.offset[row_community[rows]][slot_row] + rank)
    return _concat(users), _concat(positions)


def _zipf_draw(rng: np.random.Generator, cdf: Floats) -> Callable[[Ints], Ints]:
    def draw(rows: Ints) -> Ints:
        found = np.searchsorted(cdf, rng.random(len(rows)), side="right")
        return np.minimum(found, len(cdf) - 1).astype(np.int64)

    return draw


def _off_taste(
    rng: np.random.Generator, layout: _Layout, tastes: Ints, pool: Ints, count: Ints
) -> tuple[Ints, Ints]:
    """Distinct uniform items outside each row's taste communities: (row, item position)."""
    dense = 2 * count > pool
    rows_out: list[Ints] = []
    index_out: list[Ints] = []
    dense_rows = np.flatnonzero(dense)
    if dense_rows.size:
        slot_row, index = _distinct_by_keys(rng, count[dense_rows], pool[dense_rows], None)
        rows_out.append(dense_rows[slot_row])
        index_out.append(index)
    sparse_rows = np.flatnonzero(~dense)
    if sparse_rows.size:
        slot_row = np.repeat(np.arange(len(sparse_rows), dtype=np.int64), count[sparse_rows])
        sparse_pool = pool[sparse_rows]

        def draw(subset: Ints) -> Ints:
            return rng.integers(0, sparse_pool[subset], dtype=np.int64)

        index = _distinct_by_rejection(slot_row, int(layout.order.size), draw)
        rows_out.append(sparse_rows[slot_row])
        index_out.append(index)
    row = _concat(rows_out)
    # Pool index -> item position: step over the row's taste blocks, lowest first.
    position = _concat(index_out)
    safe = np.where(tastes >= 0, tastes, 0)
    block_start = np.where(tastes >= 0, layout.offset[safe], layout.order.size)
    block_size = np.where(tastes >= 0, layout.size[safe], 0)
    by_start = np.argsort(block_start, axis=1)
    block_start = np.take_along_axis(block_start, by_start, axis=1)[row]
    block_size = np.take_along_axis(block_size, by_start, axis=1)[row]
    for j in range(tastes.shape[1]):
        position = np.where(position >= block_start[:, j], position + block_size[:, j], position)
    return row, position


def _distinct_by_keys(
    rng: np.random.Generator, counts: Ints, sizes: Ints, weights: Floats | None
) -> tuple[Ints, Ints]:
    """Exact weighted sampling without replacement: the `count` smallest of Exp/weight keys.

    Used when a row needs a large share of its items; costs one key per candidate item, in
    batches of bounded size.
    """
    width = int(sizes.max())
    batch = max(1, _KEY_BUDGET // width)
    out_rows: list[Ints] = []
    out_index: list[Ints] = []
    columns = np.arange(width, dtype=np.int64)
    for lo in range(0, len(counts), batch):
        hi = min(len(counts), lo + batch)
        keys = rng.standard_exponential(size=(hi - lo, width))
        if weights is not None:
            keys /= weights
        keys[columns[None, :] >= sizes[lo:hi, None]] = np.inf
        order = np.argsort(keys, axis=1, kind="stable")
        take = columns[None, :] < counts[lo:hi, None]
        out_index.append(order[take].astype(np.int64))
        out_rows.append(np.repeat(np.arange(lo, hi, dtype=np.int64), counts[lo:hi]))
    return _concat(out_rows), _concat(out_index)


def _distinct_by_rejection(slot_row: Ints, span: int, draw: Callable[[Ints], Ints]) -> Ints:
    """Per-slot indices, distinct within each row: redraw clashes until none are left.

    Exact successive sampling; used where the worst-case acceptance stays high, so the
    pending set shrinks geometrically.
    """
    index = draw(slot_row)
    keys = slot_row * span + index
    accepted, first = np.unique(keys, return_index=True)
    pending = np.ones(len(keys), dtype=np.bool_)
    pending[first] = False
    waiting = np.flatnonzero(pending)
    extra = np.empty(0, dtype=np.int64)
    while waiting.size:
        candidate = draw(slot_row[waiting])
        candidate_keys = slot_row[waiting] * span + candidate
        free = ~(_isin_sorted(candidate_keys, accepted) | _isin_sorted(candidate_keys, extra))
        free_at = np.flatnonzero(free)
        new_keys, first = np.unique(candidate_keys[free_at], return_index=True)
        won = free_at[first]
        index[waiting[won]] = candidate[won]
        extra = np.sort(np.concatenate([extra, new_keys]))
        keep = np.ones(len(waiting), dtype=np.bool_)
        keep[won] = False
        waiting = waiting[keep]
    return index


def _isin_sorted(values: Ints, sorted_set: Ints) -> Bools:
    if sorted_set.size == 0:
        return np.zeros(len(values), dtype=np.bool_)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[at] == values, dtype=np.bool_)


def _ratings(rng: np.random.Generator, on_taste: Bools) -> Ints:
    u = rng.random(len(on_taste))
    out = np.empty(len(on_taste), dtype=np.int64)
    for mask, table in ((on_taste, _ON_TASTE_RATINGS), (~on_taste, _OFF_TASTE_RATINGS)):
        values = np.array([value for value, _ in table], dtype=np.int64)
        cdf = np.cumsum([p for _, p in table])
        picked = np.searchsorted(cdf / cdf[-1], u[mask], side="right")
        out[mask] = values[np.minimum(picked, len(values) - 1)]
    return out


def _concat(parts: list[Ints]) -> Ints:
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64, copy=False)


# --- output -------------------------------------------------------------------------------

_Field = tuple[Bytes, Bools]
_HALF_STARS = np.frombuffer(
    b"".join(f"{h / 2:.1f}".encode() for h in range(1, 11)), dtype=np.uint8
).reshape(10, 3)


def _digits(values: Ints, present: Bools | None = None) -> _Field:
    """Right-aligned decimal digits with a mask that drops leading zeros (and absent values)."""
    width = len(str(int(values.max()))) if values.size else 1
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    mask = values[:, None] >= powers
    mask[:, -1] = True
    if present is not None:
        mask &= present[:, None]
    return digits, mask


def _literal(rows: int, text: bytes, present: Bools | None = None) -> _Field:
    chars = np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (rows, len(text)))
    mask = np.ones((rows, len(text)), dtype=np.bool_)
    if present is not None:
        mask &= present[:, None]
    return chars, mask


def _render(fields: list[_Field]) -> bytes:
    chars = np.concatenate([f[0] for f in fields], axis=1)
    mask = np.concatenate([f[1] for f in fields], axis=1)
    return bytes(chars[mask].tobytes())


def _ratings_bytes(user: Ints, item: Ints, half_stars: Ints, time: Ints) -> bytes:
    parts: list[bytes] = []
    for lo in range(0, len(user), _RENDER_ROWS):
        s = slice(lo, lo + _RENDER_ROWS)
        rows = len(user[s])
        rating: _Field = (_HALF_STARS[half_stars[s] - 1], np.ones((rows, 3), dtype=np.bool_))
        comma = _literal(rows, b",")
        parts.append(
            _render(
                [
                    _digits(user[s]),
                    comma,
                    _digits(item[s]),
                    comma,
                    rating,
                    comma,
                    _digits(time[s]),
                    _literal(rows, b"\n"),
                ]
            )
        )
    return b"".join(parts)


def _items_bytes(layout: _Layout) -> bytes:
    ids = np.arange(1, layout.order.size + 1, dtype=np.int64)
    rows = len(ids)
    return _render(
        [
            _digits(ids),
            _literal(rows, b","),
            _digits(layout.community_of_item[1:]),
            _literal(rows, b"\n"),
        ]
    )


def _pairs_bytes(first: Ints, second: Ints) -> bytes:
    rows = len(first)
    return _render([_digits(first), _literal(rows, b","), _digits(second), _literal(rows, b"\n")])


def _users_bytes(users: _Users) -> bytes:
    rows = len(users.counts)
    tastes = users.tastes
    fields: list[_Field] = [_digits(np.arange(1, rows + 1, dtype=np.int64)), _literal(rows, b",")]
    for j in range(tastes.shape[1]):
        present = tastes[:, j] >= 0
        if j:
            fields.append(_literal(rows, b";", present))
        fields.append(_digits(np.maximum(tastes[:, j], 0), present))
    fields.append(_literal(rows, b"\n"))
    return _render(fields)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
