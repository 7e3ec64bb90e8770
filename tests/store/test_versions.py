"""Publishing embedding versions to a real Redis."""

import json

import numpy as np
import pytest

from streaming.config import Settings
from streaming.store import connect
from streaming.store.versions import (
    VersionKeys,
    current_version,
    decode_vector,
    publish_version,
    switch_to,
    write_version,
)

pytestmark = pytest.mark.integration


def test_publish_writes_a_whole_version_then_switches(local_stack: Settings, unique: str) -> None:
    client = connect(local_stack.redis)
    keys = VersionKeys(unique)
    assert current_version(client, unique) is None
    vectors = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    first = publish_version(client, unique, [10, 11, 12, 13, 14], vectors, [13], {"seed": 1})
    assert current_version(client, unique) == first
    stored = client.hgetall(keys.vectors(first))
    assert len(stored) == 5
    np.testing.assert_array_equal(decode_vector(stored[b"12"]), vectors[2])
    assert client.smembers(keys.cold(first)) == {b"13"}
    meta = client.hgetall(keys.meta(first))
    assert (meta[b"dim"], meta[b"count"], meta[b"cold_count"]) == (b"3", b"5", b"1")
    assert json.loads(meta[b"info"]) == {"seed": 1}

    second = publish_version(client, unique, [10], vectors[:1] * 2, [], {"seed": 2}, grace_s=60)
    assert second == first + 1
    assert current_version(client, unique) == second
    # the previous version stays readable for its grace period, then expires
    assert 0 < client.ttl(keys.vectors(first)) <= 60
    assert client.ttl(keys.vectors(second)) == -1
    events = client.xrange(keys.stream)
    assert [int(fields[b"version"]) for _, fields in events] == [first, second]


def test_mismatched_ids_and_vectors_are_refused(local_stack: Settings, unique: str) -> None:
    client = connect(local_stack.redis)
    with pytest.raises(ValueError, match="2 item ids but 1 vectors"):
        publish_version(client, unique, [1, 2], np.zeros((1, 4), dtype=np.float32), [], {})
    assert current_version(client, unique) is None


def test_a_publisher_dying_before_the_switch_changes_nothing_readers_see(
    local_stack: Settings, unique: str
) -> None:
    """kill -9 between writing a version and switching to it: the last good version keeps
    serving, and the half-published keys expire by themselves."""
    client = connect(local_stack.redis)
    keys = VersionKeys(unique)
    good = publish_version(client, unique, [1, 2], np.ones((2, 4), np.float32), [], {})
    orphan = write_version(client, unique, [1, 2, 3], np.zeros((3, 4), np.float32), [3], {})
    assert current_version(client, unique) == good
    assert decode_vector(client.hget(keys.vectors(good), "1"))[0] == 1.0
    for key in keys.of_version(orphan)[:3]:
        assert 0 < client.ttl(key) <= 3600
    for key in (keys.vectors(good), keys.meta(good)):  # (it has no cold set)
        assert client.ttl(key) == -1

    switch_to(client, unique, orphan)  # a later switch makes a written version permanent
    assert current_version(client, unique) == orphan
    assert client.ttl(keys.vectors(orphan)) == -1
    assert 0 < client.ttl(keys.vectors(good)) <= 3600
