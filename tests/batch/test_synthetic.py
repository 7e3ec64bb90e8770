"""The synthetic generator: exact counts, MovieLens format, determinism, and real structure."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from batch import synthetic
from batch.synthetic import (
    SyntheticResult,
    SyntheticSpec,
    generate,
    load_drift,
    load_tastes,
)
from streaming.embeddings.labels import load_communities

HALF_STARS = {f"{h / 2:.1f}" for h in range(1, 11)}


class Data(NamedTuple):
    result: SyntheticResult
    spec: SyntheticSpec
    rows: list[tuple[int, int, float, int]]
    communities: dict[int, int]
    tastes: dict[int, tuple[int, ...]]


def read_ratings(path: Path) -> list[tuple[int, int, float, int]]:
    lines = path.read_text(encoding="ascii").splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    rows = []
    for line in lines[1:]:
        user, item, rating, time = line.split(",")
        assert rating in HALF_STARS, line
        rows.append((int(user), int(item), float(rating), int(time)))
    return rows


def load(result: SyntheticResult, spec: SyntheticSpec) -> Data:
    return Data(
        result=result,
        spec=spec,
        rows=read_ratings(result.ratings_path),
        communities=load_communities(result.items_path),
        tastes=load_tastes(result.users_path),
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    spec = SyntheticSpec()
    return load(generate(tmp_path_factory.mktemp("synthetic"), spec), spec)


def by_user(rows: list[tuple[int, int, float, int]]) -> dict[int, list[tuple[int, float, int]]]:
    users: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    for user, item, rating, time in rows:
        users[user].append((item, rating, time))
    return users


def test_exact_counts(data: Data) -> None:
    spec, result = data.spec, data.result
    assert len(data.rows) == spec.events == result.events
    users = by_user(data.rows)
    assert sorted(users) == list(range(1, spec.users + 1))
    assert min(len(events) for events in users.values()) >= 3
    assert (result.users, result.items, result.communities) == (
        spec.users,
        spec.items,
        spec.communities,
    )
    # Heavy-tailed activity: the busiest user rates far more than the median one.
    sizes = sorted(len(events) for events in users.values())
    assert sizes[-1] > 4 * sizes[len(sizes) // 2]


def test_ratings_file_is_movielens_shaped(data: Data) -> None:
    spec = data.spec
    assert [row[0] for row in data.rows] == sorted(row[0] for row in data.rows)
    for events in by_user(data.rows).values():
        times = [time for _, _, time in events]
        assert times == sorted(times)
        assert times[0] >= spec.start_time
        items = [item for item, _, _ in events]
        assert len(set(items)) == len(items), "a user rated an item twice"
    assert {item for _, item, _, _ in data.rows} <= set(range(1, spec.items + 1))
    assert all(0.5 <= rating <= 5.0 for _, _, rating, _ in data.rows)
    # The global stream interleaves users once ordered by time.
    in_time = sorted(data.rows, key=lambda row: row[3])
    switches = sum(a[0] != b[0] for a, b in itertools.pairwise(in_time))
    assert switches > len(data.rows) // 2


def test_items_users_and_spec_files(data: Data) -> None:
    spec, result = data.spec, data.result
    assert result.items_path.read_text().splitlines()[0] == "item_id,community"
    assert sorted(data.communities) == list(range(1, spec.items + 1))
    sizes = Counter(data.communities.values())
    assert sorted(sizes) == list(range(spec.communities))
    assert max(sizes.values()) - min(sizes.values()) <= 1
    # Ids carry no community information: neighbouring ids rarely share a community.
    same = sum(data.communities[i] == data.communities[i + 1] for i in range(1, spec.items))
    assert same < 0.15 * spec.items

    assert result.users_path.read_text().splitlines()[0] == "user_id,tastes"
    assert sorted(data.tastes) == list(range(1, spec.users + 1))
    counts = Counter(len(tastes) for tastes in data.tastes.values())
    assert set(counts) == {1, 2, 3}
    for tastes in data.tastes.values():
        assert len(set(tastes)) == len(tastes)
        assert all(0 <= c < spec.communities for c in tastes)

    assert json.loads(result.spec_path.read_text()) == asdict(spec)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    spec = SyntheticSpec(users=300, items=200, communities=8, events=6_000, seed=7)
    first = generate(tmp_path / "a", spec)
    second = generate(tmp_path / "b", spec)
    other = generate(tmp_path / "c", SyntheticSpec(**{**asdict(spec), "seed": 8}))
    for name in ("ratings.csv", "items.csv", "users.csv", "spec.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.ratings_path.read_bytes() != other.ratings_path.read_bytes()
    assert second.items_path.read_bytes() != other.items_path.read_bytes()


def test_planted_tastes_drive_events_and_ratings(data: Data) -> None:
    on_taste = [data.communities[item] in data.tastes[user] for user, item, _, _ in data.rows]
    assert sum(on_taste) / len(on_taste) > 0.85

    per_user: dict[int, list[bool]] = defaultdict(list)
    for (user, _, _, _), on in zip(data.rows, on_taste, strict=True):
        per_user[user].append(on)
    assert statistics.median(sum(v) / len(v) for v in per_user.values()) > 0.85

    high = [rating >= 3.5 for _, _, rating, _ in data.rows]
    high_on = [h for h, on in zip(high, on_taste, strict=True) if on]
    high_off = [h for h, on in zip(high, on_taste, strict=True) if not on]
    assert sum(high_on) / len(high_on) > 0.85
    assert sum(high_off) / len(high_off) < 0.3


def test_popularity_is_skewed_within_communities(data: Data) -> None:
    events = Counter(item for _, item, _, _ in data.rows)
    members: dict[int, list[int]] = defaultdict(list)
    for item, community in data.communities.items():
        members[community].append(events[item])
    ratios = [max(counts) / max(statistics.median(counts), 1) for counts in members.values()]
    assert statistics.median(ratios) > 3


def test_noise_free_users_stay_on_taste(tmp_path: Path) -> None:
    spec = SyntheticSpec(users=200, items=300, communities=10, events=4_000, noise=0.0)
    data = load(generate(tmp_path, spec), spec)
    assert all(data.communities[item] in data.tastes[user] for user, item, _, _ in data.rows)


@pytest.mark.parametrize(
    "spec",
    [
        # Users must rate (nearly) every item of their communities: the dense path.
        SyntheticSpec(users=5, items=30, communities=10, events=150, noise=0.0),
        # Everyone rates everything.
        SyntheticSpec(users=4, items=3, communities=3, events=12),
        # Tastes cover the whole catalogue, so there is nothing off-taste to pick.
        SyntheticSpec(users=50, items=100, communities=1, events=3_000, noise=0.3),
        # Strong skew over big communities: long rejection tails.
        SyntheticSpec(users=40, items=20_000, communities=4, events=20_000, zipf_exponent=2.5),
    ],
    ids=["exhaust-communities", "everything", "no-off-taste", "steep-zipf"],
)
def test_edge_specs_keep_the_invariants(tmp_path: Path, spec: SyntheticSpec) -> None:
    rows = read_ratings(generate(tmp_path, spec).ratings_path)
    assert len(rows) == spec.events
    users = by_user(rows)
    assert len(users) == spec.users
    for events in users.values():
        assert len(events) >= 3
        assert len({item for item, _, _ in events}) == len(events)


def test_chunks_report_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "_CHUNK_EVENTS", 1_000)
    spec = SyntheticSpec(users=300, items=200, communities=8, events=6_000)
    calls: list[tuple[int, int]] = []
    rows = read_ratings(
        generate(tmp_path, spec, progress=lambda n, t: calls.append((n, t))).ratings_path
    )
    assert len(calls) >= 6
    assert [n for n, _ in calls] == sorted({n for n, _ in calls})
    assert calls[-1] == (spec.events, spec.events)
    assert {t for _, t in calls} == {spec.events}
    assert len(rows) == spec.events
    assert len(by_user(rows)) == spec.users


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("users", {"users": 0}),
        ("items", {"items": -1}),
        ("items", {"items": 2, "communities": 1}),
        ("communities", {"communities": 0}),
        ("communities", {"items": 10, "communities": 11}),
        ("events", {"events": 0}),
        ("events", {"users": 10, "events": 29}),
        ("events", {"users": 2, "items": 5, "communities": 1, "events": 11}),
        ("tastes", {"tastes": 0}),
        ("zipf_exponent", {"zipf_exponent": -0.5}),
        ("zipf_exponent", {"zipf_exponent": float("nan")}),
        ("noise", {"noise": 1.0}),
        ("noise", {"noise": -0.1}),
        ("start_time", {"start_time": -1}),
        ("seed", {"seed": -1}),
    ],
)
def test_spec_validation_names_the_field(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        SyntheticSpec(**changes)


def _pairs(path: Path) -> dict[int, int]:
    lines = path.read_text().splitlines()[1:]
    return {int(a): int(b) for a, b in (line.split(",") for line in lines)}


def test_drift_moves_items_to_another_community_at_the_given_time(tmp_path: Path) -> None:
    spec = SyntheticSpec(
        users=400, items=300, communities=6, events=8_000, noise=0.0, drift_share=0.2, seed=3
    )
    data = load(generate(tmp_path, spec), spec)
    after = load_drift(tmp_path / "drift.csv")
    drift_time = spec.start_time + round(spec.drift_at * 365 * 24 * 3600)
    assert spec.drift_time == drift_time
    assert len(after) == 60  # 20% of the items, none dropped: no community holds half of them
    assert all(data.communities[item] != community for item, community in after.items())
    # community sizes stay the same: the moved items are rotated among themselves
    before_sizes = Counter(data.communities[item] for item in after)
    assert Counter(after.values()) == before_sizes
    # without noise every rating is on taste: in the item's community of its time
    rated_before, rated_after = set(), set()
    for user, item, _, time in data.rows:
        moved_now = item in after and time >= drift_time
        community = after[item] if moved_now else data.communities[item]
        assert community in data.tastes[user], (user, item, time)
        if item in after:
            (rated_after if moved_now else rated_before).add(item)
    assert len(rated_before) > 50
    assert len(rated_after) > 50


def test_launched_items_are_rated_from_their_launch_by_their_community(tmp_path: Path) -> None:
    spec = SyntheticSpec(
        users=3_000, items=200, communities=4, events=15_000, noise=0.0, launch_share=0.3
    )
    data = load(generate(tmp_path, spec), spec)
    launches = _pairs(tmp_path / "launches.csv")
    assert len(launches) == 4 * 15  # 30% of each community of 50, rounded down
    days = sorted({(time - spec.start_time) // 86_400 for time in launches.values()})
    assert days[0] >= 0
    assert days[-1] < 365
    on_launched = 0
    for user, item, _, time in data.rows:
        assert data.communities[item] in data.tastes[user]
        if item in launches:
            on_launched += 1
            assert launches[item] <= time < launches[item] + 86_400, (item, time)
    assert on_launched > 100
    assert len({(user, item) for user, item, _, _ in data.rows}) == len(data.rows)


def test_a_rerun_without_the_options_leaves_no_drift_or_launch_file(tmp_path: Path) -> None:
    generate(tmp_path, SyntheticSpec(users=50, items=40, events=500, drift_share=0.1))
    generate(tmp_path, SyntheticSpec(users=50, items=40, events=500))
    assert not (tmp_path / "drift.csv").exists()
