"""The prequential harness on a hand-made replay whose per-policy metrics are known.

Four items, so every covered case is a hit at k=10: the metrics say which vectors each
policy had when, whatever Word2Vec learnt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from batch.commands import add_eval_arguments, run_eval
from batch.prequential import prequential, replay_transitions, run_stream, summary
from streaming.config import Settings
from streaming.embeddings.graph import Sequences, user_sequences

DAY = 86_400
B = 20_000 * DAY  # midnight (UTC) of day 0

# (user, item, time): transitions 0: 1->2 and 1: 2->3 on day 0; 2: 1->2, 3: 2->4 (item 4 new)
# and 4: 2->4 on day 1; 5: 3->4 on day 2.
RATINGS = [
    (1, 1, B),
    (1, 2, B + 10),
    (1, 3, B + 20),
    (2, 1, B + DAY + 100),
    (2, 2, B + DAY + 110),
    (2, 4, B + DAY + 120),
    (3, 2, B + DAY + 200),
    (3, 4, B + DAY + 210),
    (4, 3, B + 2 * DAY),
    (4, 4, B + 2 * DAY + 10),
]
# tiny and single-threaded: the same seed gives the same vectors
SETTINGS = Settings(
    training={"vector_size": 4, "window": 2, "epochs": 1, "workers": 1},
    walks={"n_walks": 10, "length": 3},
)


def _sequences() -> Sequences:
    """The kept ratings of RATINGS (all of them: 5.0 against a threshold of 3.5)."""
    users, items, times = (
        np.array(column, dtype=np.int64) for column in zip(*RATINGS, strict=True)
    )
    return user_sequences(users, items, np.full(len(users), 5.0), times, 3.5)


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, object]]:
    replay, outcomes = prequential(_sequences(), SETTINGS, 2, 1, 10, lambda _: None)
    return summary(replay, outcomes)


def test_replay_is_in_event_time_order() -> None:
    replay = replay_transitions(_sequences())
    assert list(zip(replay.src.tolist(), replay.dst.tolist(), strict=True)) == [
        (1, 2), (2, 3), (1, 2), (2, 4), (2, 4), (3, 4)
    ]  # fmt: skip
    assert replay.fresh.tolist() == [True, True, False, True, True, False]
    assert replay.midpoint == B + 10 + DAY


def _known(metrics: dict[str, object]) -> tuple[object, ...]:
    return tuple(metrics[key] for key in ("hit_rate", "cases", "answerable", "coverage"))


def test_stream_answers_the_new_item_the_same_day(policies: dict[str, dict]) -> None:
    # no model before the first cycle (after transition 1); item 4 gets its neighbour's
    # average as transition 3 brings it, so transitions 4 and 5 are answered
    stream = policies["stream"]
    assert _known(stream) == (0.5, 6, 4, 0.5)
    assert _known(stream["fresh"]) == (0.25, 4, 2, 0.25)
    assert stream["retrains"] == 2
    assert 0 < stream["ndcg"] <= stream["hit_rate"]


def test_stream_hands_each_cycles_vectors_to_its_caller() -> None:
    # cycles after transitions 2 and 4 (the sixth and last is only scored): the first full,
    # the second incremental; each with the vectors it serves and its newest transition's time
    replay = replay_transitions(_sequences())
    versions: list[tuple[str, list[int], int]] = []
    outcome = run_stream(
        replay,
        SETTINGS,
        2,
        10,
        lambda _: None,
        on_version=lambda kind, vectors, newest: versions.append(
            (kind, sorted(vectors.item_ids.tolist()), newest)
        ),
    )
    assert versions == [
        ("full", [1, 2, 3], B + 20),
        ("incremental", [1, 2, 3, 4], B + DAY + 120),
    ]
    assert outcome.retrains == 2


def test_nightly_cannot_answer_an_item_first_seen_today(policies: dict[str, dict]) -> None:
    # retrained before day 1 (items 1-3) and before day 2 (item 4 too)
    nightly = policies["nightly"]
    assert _known(nightly) == (pytest.approx(2 / 6), 6, 4, pytest.approx(2 / 6))
    assert _known(nightly["fresh"]) == (0.0, 4, 2, 0.0)
    assert nightly["retrains"] == 2


def test_static_learns_the_first_half_and_is_scored_on_the_second(
    policies: dict[str, dict],
) -> None:
    static = policies["static"]
    assert _known(static) == (0.25, 4, 4, 0.25)
    assert static["second_half"] == {k: v for k, v in static.items() if k in static["second_half"]}
    assert list(static["months"]) == [str(np.datetime64(B, "s").astype("datetime64[M]"))]


def test_the_command_writes_the_json_and_the_curve(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},5.0,{t}\n" for u, i, t in RATINGS)
    )
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    args = parser.parse_args(
        ["--ratings", str(ratings), "--prequential", "--cycle-every", "2", "--json",
         str(tmp_path / "out.json"), "--plot", str(tmp_path / "curve.png")]
    )  # fmt: skip
    lines: list[str] = []
    assert run_eval(SETTINGS, args, lines.append) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result["policies"]) == {"stream", "nightly", "static"}
    assert result["policies"]["stream"]["fresh"]["cases"] == 4
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert any("same-day" in line for line in lines)
