"""User sequences thinned by age (`fading_sequences`): what a full retrain learns with a
half-life, in batch and in the trainer alike."""

from __future__ import annotations

import numpy as np

from streaming.embeddings.graph import Sequences
from streaming.embeddings.pipeline import fading_sequences

DAY = 86_400


def _rows(rows: list[tuple[int, list[int], list[int]]]) -> Sequences:
    """(user, items, times) per row."""
    users = np.array([user for user, _, _ in rows], dtype=np.int64)
    lengths = [len(items) for _, items, _ in rows]
    return Sequences(
        users,
        np.r_[0, np.cumsum(lengths)].astype(np.int64),
        np.array([i for _, items, _ in rows for i in items], dtype=np.int64),
        np.array([t for _, _, times in rows for t in times], dtype=np.int64),
    )


def test_without_a_half_life_every_item_is_kept() -> None:
    sequences = _rows([(1, [5, 6, 7], [0, DAY, 900 * DAY]), (2, [8], [3])])
    assert fading_sequences(sequences, None, seed=1) == [[5, 6, 7], [8]]


def test_the_newest_transitions_are_always_kept_and_a_row_starts_with_its_first_one() -> None:
    """A first item weighs as the transition out of it: rated long ago, it is kept when the
    next item was rated at the newest time, with a half-life of a second."""
    newest = 1_000 * DAY
    rows = [(user, [1, 2], [0, newest]) for user in range(1_000)]
    assert fading_sequences(_rows(rows), 1.0, seed=3) == [[1, 2]] * 1_000


def test_an_item_is_kept_with_the_weight_of_the_transition_into_it() -> None:
    half_life, newest, users = 30 * DAY, 1_000 * DAY, 20_000
    rows = [(0, [0, 1], [newest - 1, newest])]  # sets the newest time
    for user in range(1, users + 1):
        ages = [3 * half_life, 2 * half_life, half_life, 0]  # one transition per age, in order
        rows.append((user, [10, 11, 12, 13], [newest - age for age in ages]))
    thinned = fading_sequences(_rows(rows), half_life, seed=7)
    for item, weight in ((11, 0.25), (12, 0.5), (13, 1.0)):
        kept = sum(item in row for row in thinned[1:])
        spread = 5 * np.sqrt(users * weight * (1 - weight))  # binomial, 5 standard deviations
        assert abs(kept - users * weight) <= spread, (item, kept)
    first = sum(row[:1] == [10] for row in thinned[1:])  # as the transition out of it: 2 h old
    assert abs(first - users / 4) <= 5 * np.sqrt(users * 0.25 * 0.75)


def test_an_items_draw_depends_on_its_user_item_and_time_not_on_its_position() -> None:
    """The trainer's rows (chained back from transitions, without one-item rows) thin as
    batch's, which hold every user."""
    newest, half_life = 400 * DAY, 60 * DAY
    rng = np.random.default_rng(11)
    rows = []
    for user in range(500):
        times = np.sort(rng.integers(0, newest, size=6))
        rows.append((user, rng.integers(0, 50, size=6).tolist(), times.tolist()))
    rows.append((9_999, [1, 2], [newest - 5, newest]))
    one_rating = (10_000, [3], [newest + DAY])  # no transition: the newest one stays the reference
    batch = fading_sequences(_rows([one_rating, *rows]), half_life, seed=2)[1:]
    trainer = fading_sequences(_rows(rows[::-1]), half_life, seed=2)[::-1]
    assert trainer == batch
    assert sum(map(len, batch)) < 6 * 500  # thinned at all
    assert fading_sequences(_rows(rows), half_life, seed=3) != batch
