"""The durable corpus: what the manifest says is exactly what a restart finds."""

from __future__ import annotations

from pathlib import Path

from streaming.config import TrainerSettings
from streaming.records import Sighting
from streaming.trainer.corpus import Corpus, Entry, UserTransition
from streaming.trainer.cycles import trainable


def _tokens(corpus: Corpus, start: int = 0) -> list[tuple[int, Entry]]:
    return list(corpus.samples(start))


def test_samples_offsets_and_neighbours_survive_a_restart(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path, window=100, segment_samples=3)
    corpus.append([[1, 2], [2, 3]], {"s:0": 2}, [Sighting(5, {1: 2}, True)], 900)
    sightings = [Sighting(5, {2: 1}, False), Sighting(6, {5: 1}, True)]
    corpus.append([[3, 4, 5], [6], [7, 8]], {"s:0": 5, "i:1": 1}, sightings, 800)
    again = Corpus(tmp_path, window=100, segment_samples=3)
    assert again.next_seq == 5
    assert _tokens(again) == [
        (0, ["1", "2"]),
        (1, ["2", "3"]),
        (2, ["3", "4", "5"]),
        (3, ["6"]),
        (4, ["7", "8"]),
    ]
    assert _tokens(again, 3) == [(3, ["6"]), (4, ["7", "8"])]
    assert again.offsets == {"s:0": 5, "i:1": 1}
    assert again.neighbours == {5: {1: 2, 2: 1}, 6: {5: 1}}
    assert again.newest_event_time == 900
    assert len(list(tmp_path.glob("seg-*.txt"))) == 2


def test_a_write_after_the_last_manifest_is_discarded(tmp_path: Path) -> None:
    """A crash between the segment write and the manifest: those samples are not in the
    corpus, and the offsets still point at them, so they are consumed again exactly once."""
    corpus = Corpus(tmp_path, window=100, segment_samples=10)
    corpus.append([[1, 2]], {"s:0": 1}, [])
    segment = next(tmp_path.glob("seg-*.txt"))
    with segment.open("a") as handle:
        handle.write("9 9 9\n9 9")  # torn: never made it into the manifest
    again = Corpus(tmp_path, window=100, segment_samples=10)
    assert _tokens(again) == [(0, ["1", "2"])]
    assert again.offsets == {"s:0": 1}
    again.append([[3, 4]], {"s:0": 2}, [])
    assert _tokens(Corpus(tmp_path, window=100, segment_samples=10)) == [
        (0, ["1", "2"]),
        (1, ["3", "4"]),
    ]


def test_only_whole_segments_before_the_window_are_dropped(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path, window=4, segment_samples=2)
    corpus.append([[i] for i in range(7)], {"s:0": 7}, [])
    # the window starts at sample 3: segment [0, 1] lies wholly before it and goes; [2, 3]
    # holds sample 3 and stays
    assert corpus.first_seq == 2
    assert [seq for seq, _ in corpus.samples()] == [2, 3, 4, 5, 6]
    assert len(list(tmp_path.glob("seg-*.txt"))) == 3


def test_only_samples_that_are_not_held_out_count_astrainable() -> None:
    options = TrainerSettings(held_out_every=50)
    # sample 0 is held out: a corpus of one sample has nothing to train on
    assert [trainable(0, end, options) for end in (0, 1, 2, 50, 51)] == [0, 0, 1, 49, 49]
    assert trainable(50, 100, options) == 49
    assert trainable(1, 50, options) == 49
    assert trainable(7, 7, options) == 0


def test_user_transitions_survive_a_restart_next_to_walks(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path, window=100, segment_samples=3)
    corpus.append([[1, 2], UserTransition(7, 100, 1, 2), UserTransition(7, 101, 2, 3)], {}, [])
    again = Corpus(tmp_path, window=100, segment_samples=3)
    assert _tokens(again) == [
        (0, ["1", "2"]),
        (1, UserTransition(user=7, event_time=100, src=1, dst=2)),
        (2, UserTransition(user=7, event_time=101, src=2, dst=3)),
    ]


def test_an_item_announced_afresh_forgets_its_earlier_neighbours(tmp_path: Path) -> None:
    """The job announces an item it forgot (`stream.item_idle_ttl_s`) with a first sighting
    again; what the corpus knew of its neighbours no longer holds. Records apply in order."""
    corpus = Corpus(tmp_path, window=100, segment_samples=3)
    corpus.append([], {"i:0": 2}, [Sighting(5, {1: 2}, True), Sighting(5, {2: 1}, False)])
    assert corpus.neighbours == {5: {1: 2, 2: 1}}
    returned = [Sighting(5, {2: 4}, False), Sighting(5, {9: 1}, True), Sighting(5, {3: 1}, False)]
    corpus.append([], {"i:0": 5}, returned)
    assert corpus.neighbours == {5: {9: 1, 3: 1}}
    assert Corpus(tmp_path, window=100, segment_samples=3).neighbours == {5: {9: 1, 3: 1}}
