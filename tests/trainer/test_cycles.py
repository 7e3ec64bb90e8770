"""Cycle plans: a full cycle trains on the batch corpus of its window's events; an incremental
one on what is new, in context."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from streaming.config import (
    Settings,
    StreamSettings,
    TrainerSettings,
    TrainingSettings,
    WalkSettings,
)
from streaming.embeddings.graph import Sequences, transition_graph, user_sequences
from streaming.embeddings.pipeline import training_corpus
from streaming.embeddings.smoothing import smooth
from streaming.embeddings.vectors import Embeddings
from streaming.errors import ConfigError
from streaming.trainer import Trainer
from streaming.trainer.checkpoints import Checkpoint
from streaming.trainer.corpus import Corpus, UserTransition
from streaming.trainer.cycles import chain, plan_cycle

OPTIONS = TrainerSettings(held_out_every=10, replay_ratio=1.0)
TRAINING = TrainingSettings(seed=3)
WALKS = WalkSettings(n_walks=500, length=6)


def _ratings(seed: int, users: int = 40) -> Sequences:
    """Users' sequences with ties in event time and items rated again later, never twice in
    a row (the job keeps no transition from an item to itself)."""
    rng = random.Random(seed)
    rows: list[tuple[int, int, float, int]] = []
    for user in range(1, users + 1):
        when, previous, tie = rng.randrange(1_000), -1, False
        for _ in range(rng.randrange(1, 25)):
            # a tie in event time is ordered by item, as the job orders it: a larger one
            allowed = [i for i in range(60) if (i > previous if tie else i != previous)]
            item = rng.choice(allowed)
            rows.append((user, item, 5.0, when))
            tie = item < 59 and rng.random() < 0.3
            when += 0 if tie else rng.choice([1, 7])
            previous = item
    columns = [np.array(column) for column in zip(*rows, strict=True)]
    sequences = user_sequences(*columns, high_rating=3.5)
    items = sequences.items
    repeat = np.r_[False, items[1:] == items[:-1]]
    repeat[sequences.indptr[:-1]] = False
    assert not repeat.any()
    return sequences


def _transitions(sequences: Sequences) -> list[UserTransition]:
    """What the job writes: each pair of consecutive items, with the later one's time."""
    found = []
    for k, user in enumerate(sequences.users.tolist()):
        items = sequences.items_of(k).tolist()
        times = sequences.times[sequences.indptr[k] : sequences.indptr[k + 1]].tolist()
        for j in range(1, len(items)):
            found.append(UserTransition(user, times[j], items[j - 1], items[j]))
    return found


def _rows(sequences: Sequences) -> list[list[int]]:
    return [row for row in sequences.as_lists() if len(row) > 1]


def test_transitions_in_any_order_and_repeated_chain_into_each_users_sequence() -> None:
    sequences = _ratings(seed=1)
    transitions = _transitions(sequences)
    shuffled = transitions + random.Random(2).sample(transitions, len(transitions) // 5)
    random.Random(3).shuffle(shuffled)
    chained = chain(shuffled)
    assert chained.as_lists() == _rows(sequences)
    assert len(chained) == len(_rows(sequences)) > 20


def test_a_gap_in_a_users_transitions_starts_a_new_row() -> None:
    cut = [UserTransition(1, 10, 5, 6), UserTransition(1, 12, 8, 9), UserTransition(1, 13, 9, 4)]
    assert chain(cut).as_lists() == [[5, 6], [8, 9, 4]]
    assert chain(cut).users.tolist() == [1, 1]


def _corpus(tmp_path: Path, samples: list[list[int] | UserTransition]) -> Corpus:
    corpus = Corpus(tmp_path, window=10**6, segment_samples=1_000)
    corpus.append(samples, {"samples:0": len(samples)}, [])
    return corpus


@pytest.mark.parametrize("half_life_s", [None, 600.0], ids=["counts", "decayed"])
def test_a_full_cycle_trains_on_the_batch_corpus_of_its_windows_events(
    tmp_path: Path, half_life_s: float | None
) -> None:
    sequences = _ratings(seed=4)
    walks: list[list[int] | UserTransition] = [[1, 2, 3], [4, 5], [6, 7, 8]] * 10
    samples = [*walks, *_transitions(sequences)]
    random.Random(5).shuffle(samples)
    settings = WALKS.model_copy(update={"half_life_s": half_life_s})
    plan = plan_cycle(_corpus(tmp_path, samples), None, None, True, OPTIONS, TRAINING, settings)
    graph = transition_graph(sequences, half_life_s)
    expected, drawn = training_corpus(sequences, graph, TRAINING, settings)
    assert plan.corpus == expected
    if half_life_s is not None:  # the walks follow the decayed weights, not the counts
        assert (
            expected != training_corpus(sequences, transition_graph(sequences), TRAINING, WALKS)[0]
        )
    assert drawn == WALKS.n_walks
    assert plan.users == len(_rows(sequences))
    assert plan.replay == []
    assert plan.held_out == []  # the first version: nothing to compare with, nothing held out


def _after(plan_end: int, cycle: int = 1) -> Checkpoint:
    return Checkpoint(
        cycle=cycle, kind="full", version=cycle, trained_through=plan_end, offsets={},
        newest_event_time=0, seed=3, training={},
    )  # fmt: skip


def test_the_gate_holds_out_a_share_of_the_transitions_new_since_the_current_version(
    tmp_path: Path,
) -> None:
    sequences = _ratings(seed=6)
    transitions = _transitions(sequences)
    random.Random(7).shuffle(transitions)
    old, new = transitions[:200], transitions[200:]
    corpus = _corpus(tmp_path, [*old])
    first = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    assert first.held_out == []  # no current version to compare with: nothing held out
    corpus.append([*new, new[0], [1, 2, 3]], {"samples:0": len(transitions) + 2}, [])
    plan = plan_cycle(corpus, _after(first.end), None, True, OPTIONS, TRAINING, WALKS)
    held = {t for k, t in enumerate(new, start=200) if k % 10 == 0}
    kept = chain(t for t in transitions if t not in held)  # the repeat of a held-out one too
    expected, _ = training_corpus(kept, transition_graph(kept), TRAINING, WALKS)
    assert plan.corpus == expected
    newest_first = sorted(held, key=lambda t: (t.event_time, t))
    assert plan.held_out == [[str(t.src), str(t.dst)] for t in newest_first]
    assert len(kept) > len(_rows(sequences))  # each held-out transition split its row


def test_a_full_cycle_without_transitions_trains_on_the_windows_walks(tmp_path: Path) -> None:
    walks: list[list[int] | UserTransition] = [[k, k + 1] for k in range(30)]
    plan = plan_cycle(_corpus(tmp_path, walks), None, None, True, OPTIONS, TRAINING, WALKS)
    assert plan.corpus == [[str(k), str(k + 1)] for k in range(30) if k % 10 != 0]


def test_an_incremental_cycle_trains_the_new_items_in_their_users_context(
    tmp_path: Path,
) -> None:
    old = [UserTransition(1, t, t, t + 1) for t in range(100, 160)]  # user 1: 100 ... 160
    corpus = _corpus(tmp_path, [*old, [7, 8, 9], [10, 11]])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    corpus.append([UserTransition(1, 160, 160, 161), [12, 13]], {"samples:0": 65}, [])
    window = 5
    training = TRAINING.model_copy(update={"window": window})
    plan = plan_cycle(corpus, _after(full.end), None, False, OPTIONS, training, WALKS)
    context = [str(i) for i in range(161 - 1 - window, 162)]  # the new item, what came before
    assert plan.corpus == [["12", "13"], context]
    assert plan.new == 2
    # replayed: as many items (replay_ratio 1) from users' sequences, not older walks; here
    # one slice of user 1's
    assert [len(row) for row in plan.replay] == [2 + len(context)]
    assert _is_slice(plan.replay[0], [[str(i) for i in range(100, 162)]])


def _is_slice(row: list[str], rows: list[list[str]]) -> bool:
    return any(
        row == whole[k : k + len(row)] for whole in rows for k in range(len(whole) - len(row) + 1)
    )


def test_an_incremental_cycle_replays_a_seeded_sample_of_the_windows_user_sequences(
    tmp_path: Path,
) -> None:
    sequences = _ratings(seed=11, users=60)
    corpus = _corpus(tmp_path, [*_transitions(sequences), [1, 2, 3]])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    corpus.append([[4, 5, 6], [7, 8], [9, 10]], {"samples:0": 10_000}, [])
    twice = OPTIONS.model_copy(update={"replay_ratio": 2.0})
    plan = plan_cycle(corpus, _after(full.end), None, False, twice, TRAINING, WALKS)
    again = plan_cycle(corpus, _after(full.end), None, False, twice, TRAINING, WALKS)
    rows = [[str(item) for item in row] for row in chain(_transitions(sequences)).as_lists()]
    assert plan.corpus == [["4", "5", "6"], ["7", "8"], ["9", "10"]]  # no new transitions
    assert sum(map(len, plan.replay)) == 2 * 7  # replay_ratio per trained item
    assert all(_is_slice(row, rows) for row in plan.replay)
    assert all(row in rows for row in plan.replay[:-1])  # whole rows, the last one cut
    assert plan.replay == again.replay  # seeded by the cycle


def test_with_a_half_life_the_replay_takes_recent_sequences_first(tmp_path: Path) -> None:
    hour = 3600
    # 50 users active 100 half-lives ago, 50 active now; each row 3 items (2 transitions)
    old = [UserTransition(u, t, 10 * u + k, 10 * u + k + 1) for u in range(50) for k, t in
           enumerate([0, 60])]  # fmt: skip
    now = [UserTransition(u, 100 * hour + t, 10 * u + k, 10 * u + k + 1)
           for u in range(50, 100) for k, t in enumerate([0, 60])]  # fmt: skip
    corpus = _corpus(tmp_path, [*old, *now, [1, 2, 3]])
    walks = WALKS.model_copy(update={"half_life_s": float(hour)})
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, walks)
    corpus.append([[4, 5, 6], [7, 8], [9, 10]], {"samples:0": 10_000}, [])
    replay_rows = OPTIONS.model_copy(update={"replay_ratio": 30 * 3 / 7})  # 30 rows' worth
    plan = plan_cycle(corpus, _after(full.end), None, False, replay_rows, TRAINING, walks)
    assert len(plan.replay) == 30
    assert all(int(row[0]) >= 500 for row in plan.replay)  # only the users active now
    undecayed = plan_cycle(corpus, _after(full.end), None, False, replay_rows, TRAINING, WALKS)
    assert any(int(row[0]) < 500 for row in undecayed.replay)


def test_an_incremental_cycle_without_transitions_replays_older_walks(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, [[k, k + 1] for k in range(1, 30)])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    corpus.append([[40, 41]], {"samples:0": 31}, [])
    plan = plan_cycle(corpus, _after(full.end), None, False, OPTIONS, TRAINING, WALKS)
    assert plan.corpus == [["40", "41"]]
    assert len(plan.replay) == 1  # walk_replay_ratio walks per new walk
    assert plan.replay[0] in [[str(k), str(k + 1)] for k in range(1, 30) if (k - 1) % 10 != 0]


def test_the_jobs_walks_are_cut_where_they_step_over_a_held_out_pair(tmp_path: Path) -> None:
    taught = [UserTransition(3, 60 + k, 600 + k, 601 + k) for k in range(10)]
    corpus = _corpus(tmp_path, [*taught])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    held = UserTransition(2, 50, 500, 501)  # sample 10: held out, and no one else's pair
    walks = [[499, 500, 501, 502, 500, 501], [600, 601, 602]]
    corpus.append([held, *walks], {"samples:0": 13}, [])
    plan = plan_cycle(corpus, _after(full.end), None, False, OPTIONS, TRAINING, WALKS)
    assert plan.held_out == [["500", "501"]]
    assert plan.corpus == [["499", "500"], ["501", "502", "500"], ["600", "601", "602"]]


def test_a_window_with_transitions_never_replays_older_walks(tmp_path: Path) -> None:
    """Even where `replay_ratio` asks for fewer items than a sentence has."""
    sequences = _ratings(seed=12, users=20)
    corpus = _corpus(tmp_path, [[1, 2, 3], *_transitions(sequences), [4, 5, 6]])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    new_user = [UserTransition(999, 5_000 + k, 40 + k, 41 + k) for k in range(3)]
    corpus.append([[7, 8], [9, 10], [11, 12], *new_user], {"samples:0": 10_000}, [])
    little = OPTIONS.model_copy(update={"replay_ratio": 0.1})
    plan = plan_cycle(corpus, _after(full.end), None, False, little, TRAINING, WALKS)
    assert sum(map(len, plan.corpus)) == 10  # 3 new walks, the new user's items in context
    assert plan.replay == []  # int(0.1 x 10) items: less than a sentence; no older walks


def test_replayed_sequences_never_teach_a_held_out_transition(tmp_path: Path) -> None:
    sequences = _ratings(seed=13, users=40)
    transitions = _transitions(sequences)
    corpus = _corpus(tmp_path, transitions[:100])
    full = plan_cycle(corpus, None, None, True, OPTIONS, TRAINING, WALKS)
    corpus.append(transitions[100:], {"samples:0": len(transitions)}, [])
    whole = OPTIONS.model_copy(update={"replay_ratio": 1_000.0})  # every row of the window
    plan = plan_cycle(corpus, _after(full.end), None, False, whole, TRAINING, WALKS)
    held = {(t.src, t.dst) for k, t in enumerate(transitions) if k >= 100 and k % 10 == 0}
    kept = {(t.src, t.dst) for k, t in enumerate(transitions) if k < 100 or k % 10 != 0}
    replayed = {(int(a), int(b)) for row in plan.replay for a, b in pairwise(row)}
    assert held - kept  # some held-out pairs are made by no kept transition
    assert replayed == kept  # the rows' steps are exactly the kept transitions


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_with_smoothing_a_cycle_publishes_its_vectors_smoothed_over_the_windows_graph(
    tmp_path: Path, full: bool
) -> None:
    sequences = _ratings(seed=8)
    corpus = _corpus(tmp_path, [[1, 2, 3], *_transitions(sequences)])
    walks = WALKS.model_copy(update={"half_life_s": 30.0})
    smoothing = TRAINING.model_copy(update={"smoothing": 0.3})
    previous = None if full else _after(corpus.next_seq - 10)
    plan = plan_cycle(corpus, previous, None, full, OPTIONS, smoothing, walks)
    off = TRAINING.model_copy(update={"smoothing": 0.0})
    unsmoothed = plan_cycle(corpus, previous, None, full, OPTIONS, off, walks)
    assert unsmoothed.graph is None
    assert plan.graph is not None
    # seq 0 is the walk; an incremental cycle holds out every 10th new sample (OPTIONS)
    trained = [
        t
        for seq, t in enumerate(_transitions(sequences), 1)
        if full or seq < plan.start or seq % OPTIONS.held_out_every
    ]
    assert len(trained) < len(_transitions(sequences)) or full
    assert plan.graph.to_dict() == transition_graph(chain(trained), 30.0).to_dict()
    rng = np.random.default_rng(0)
    vectors = Embeddings(
        plan.graph.items, rng.normal(size=(plan.graph.n_nodes, 4)).astype(np.float32),
        np.zeros(plan.graph.n_nodes, dtype=bool),
    )  # fmt: skip
    np.testing.assert_array_equal(
        plan.published(vectors).vectors, smooth(vectors, plan.graph, 0.3).vectors
    )
    assert unsmoothed.published(vectors) is vectors


def test_the_trainer_refuses_smoothing_without_the_users_transitions() -> None:
    settings = Settings(
        training=TRAINING.model_copy(update={"smoothing": 0.5}),
        stream=StreamSettings(transition_samples=False),
    )
    with pytest.raises(ConfigError, match=r"training.smoothing=0.5 .* set training.smoothing=0"):
        Trainer(settings)
