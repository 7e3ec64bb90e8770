"""Publishing embedding versions to a real Redis."""

import json

import numpy as np
import pytest

from streaming.config import Settings
from streaming.store import connect, versions
from streaming.store.versions import (
    VersionKeys,
    current_version,
    decode_vector,
    publish_version,
    switch_to,
    write_users,
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


def test_users_follow_their_versions_expiry_in_every_batch(
    local_stack: Settings, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written in several batches and round trips, a version's users take its expiry with
    each write (expiring before the switch, permanent after it), and a gone version gets
    none of them."""
    monkeypatch.setattr(versions, "_BATCH", 2)
    monkeypatch.setattr(versions, "_PIPELINE_ROWS", 4)
    client = connect(local_stack.redis)
    keys = VersionKeys(unique)
    users = np.arange(100, 109, dtype=np.int64)
    vectors = np.arange(9 * 3, dtype=np.float32).reshape(9, 3)
    version = write_version(client, unique, [1], np.ones((1, 3), np.float32), [], {})
    assert write_users(client, unique, version, users, vectors)
    assert client.hlen(keys.users(version)) == 9
    np.testing.assert_array_equal(
        decode_vector(client.hget(keys.users(version), "108")), vectors[8]
    )
    assert 0 < client.pttl(keys.users(version)) <= client.pttl(keys.vectors(version)) + 1_000

    switch_to(client, unique, version)
    assert write_users(client, unique, version, users[:3], vectors[:3] + 1, gone=[108])
    assert client.ttl(keys.users(version)) == -1
    assert client.hlen(keys.users(version)) == 8
    np.testing.assert_array_equal(
        decode_vector(client.hget(keys.users(version), "100")), 1 + vectors[0]
    )

    assert not write_users(client, unique, version + 1, users, vectors)  # never written
    assert not client.exists(keys.users(version + 1))
    # gone between the check and the write: the transaction writes nothing either
    gone = f"{unique}:gone"
    assert not versions._write_rows(
        client, gone + ":users", users, vectors, np.dtype("<f4"), (), like=gone
    )
    assert not client.exists(gone + ":users")


def test_a_failing_user_write_raises_and_is_not_reported_as_written(
    local_stack: Settings, unique: str
) -> None:
    client = connect(local_stack.redis)
    keys = VersionKeys(unique)
    version = write_version(client, unique, [1], np.ones((1, 3), np.float32), [], {})
    client.set(keys.users(version), "not a hash")
    with pytest.raises(Exception, match="WRONGTYPE"):
        write_users(client, unique, version, np.array([1]), np.ones((1, 3), np.float32))
