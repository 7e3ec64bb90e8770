"""The user-vector thread's state: each user's newest users record, saved and restored."""

from pathlib import Path

from streaming.embeddings.users import NO_ITEM
from streaming.records import UserItems
from streaming.trainer.users import RecentItems


def _rows(state: RecentItems) -> dict[int, list[int]]:
    users, items = state.arrays()
    return {
        int(user): [i for i in row if i != NO_ITEM]
        for user, row in zip(users.tolist(), items.tolist(), strict=True)
    }


def test_a_record_counts_only_when_it_is_newer_by_event_time_then_kept_count() -> None:
    state = RecentItems(limit=3)
    assert state.apply(UserItems(7, 2, [1, 2], 10)) == 0
    assert state.apply(UserItems(8, 1, [5], 10)) == 1
    assert state.apply(UserItems(7, 2, [1, 2], 10)) is None  # a repeat
    assert state.apply(UserItems(7, 1, [1], 9)) is None  # an older one, late
    assert state.apply(UserItems(7, 3, [1, 2, 9], 10)) == 0  # the same second, one more item
    assert state.apply(UserItems(7, 5, [2, 3, 4, 6], 12)) == 0  # more than the limit
    assert _rows(state) == {7: [3, 4, 6], 8: [5]}
    # the job forgot user 7 (idle): a new sequence, counted from 1 again, later in time
    assert state.apply(UserItems(7, 1, [11], 500)) == 0
    assert state.apply(UserItems(7, 5, [2, 3, 4, 6], 12)) is None  # a repeat of the old one
    assert _rows(state) == {7: [11], 8: [5]}
    assert len(state) == 2


def test_the_state_grows_past_its_first_allocation() -> None:
    state = RecentItems(limit=2)
    for user in range(3_000):
        state.apply(UserItems(user, 1, [user], 0))
    assert _rows(state) == {user: [user] for user in range(3_000)}


def test_idle_users_are_forgotten_by_event_time() -> None:
    state = RecentItems(limit=2)
    state.apply(UserItems(1, 1, [10], 100))
    state.apply(UserItems(2, 1, [20], 150))
    state.apply(UserItems(3, 1, [30], 200))
    assert state.forget_idle(0) == []
    assert state.forget_idle(60) == [1]
    assert _rows(state) == {2: [20], 3: [30]}
    assert state.apply(UserItems(1, 2, [10, 11], 210)) == 2  # back: starts again
    assert state.apply(UserItems(2, 1, [20], 150)) is None  # still known


def test_saved_state_restores_with_its_offsets_and_another_limit(tmp_path: Path) -> None:
    state = RecentItems(limit=3)
    state.apply(UserItems(1, 4, [7, 8, 9], 100))
    state.apply(UserItems(2, 1, [5], 90))
    path = tmp_path / "state.npz"
    path.write_bytes(state.to_bytes({"users:0": 12, "users:1": 3}))
    restored, offsets = RecentItems.from_file(path, limit=3)
    assert offsets == {"users:0": 12, "users:1": 3}
    assert _rows(restored) == {1: [7, 8, 9], 2: [5]}
    assert restored.apply(UserItems(1, 4, [7, 8, 9], 100)) is None
    shorter, _ = RecentItems.from_file(path, limit=2)
    assert _rows(shorter) == {1: [8, 9], 2: [5]}
    empty, none = RecentItems.from_file(tmp_path / "missing.npz", limit=2)
    assert (len(empty), none) == (0, {})
