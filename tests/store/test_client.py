"""The consumer client against a real Redis: versions are never mixed, never missing."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter

import numpy as np
import numpy.typing as npt
import pytest
import redis

from streaming.config import Settings
from streaming.errors import StoreError
from streaming.store import EmbeddingClient, connect
from streaming.store.index import EXACT_BELOW
from streaming.store.versions import (
    VersionKeys,
    add_to_version,
    announce_prepared,
    build_vector_set,
    prepare_version,
    publish_version,
    supports_vector_sets,
    switch_to,
    write_version,
)
from tests.conftest import poll

pytestmark = pytest.mark.integration


def _client(settings: Settings, prefix: str) -> EmbeddingClient:
    return EmbeddingClient.from_settings(settings.redis.model_copy(update={"key_prefix": prefix}))


def test_concurrent_readers_never_see_two_versions(local_stack: Settings, unique: str) -> None:
    """Version v holds items 0..n-1 (plus v..v+9) with every component equal to v."""
    redis_client = connect(local_stack.redis)
    n, dim, publishes = 2_000, 16, 40

    def publish(v: int) -> None:
        items = [*range(n), *range(n + v, n + v + 10)]
        vectors = np.full((len(items), dim), v, dtype=np.float32)
        publish_version(redis_client, unique, items, vectors, [], {"v": v}, grace_s=30)

    publish(1)
    stop = threading.Event()
    seen: Counter[str] = Counter()
    failures: list[str] = []

    def read() -> None:
        client = _client(local_stack, unique)
        rng = np.random.default_rng(threading.get_ident() % 2**32)
        while not stop.is_set():
            batch = rng.choice(n, size=200, replace=False).tolist()
            got = client.vectors(batch)
            values = {float(vector[0]) for vector in got.values()}
            if len(got) != len(batch):
                failures.append(f"missed {len(batch) - len(got)} items")
            if len(values) != 1 or any(len(set(v.tolist())) != 1 for v in got.values()):
                failures.append(f"torn batch: values {sorted(values)}")
            seen["batches"] += 1
            seen[f"v{values.pop()}"] += 1
        client.close()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for v in range(2, publishes + 1):
        publish(v)
    stop.set()
    for reader in readers:
        reader.join()
    assert failures == []
    assert seen["batches"] > 100
    assert sum(1 for key in seen if key.startswith("v")) > 5, "readers saw too few versions"


def test_cold_items_join_the_current_version(local_stack: Settings, unique: str) -> None:
    redis_client = connect(local_stack.redis)
    vectors = np.eye(3, dtype=np.float32)
    version = publish_version(redis_client, unique, [1, 2, 3], vectors, [], {})
    cold = np.array([[0.5, 0.5, 0.0], [9, 9, 9]], dtype=np.float32)
    assert add_to_version(redis_client, unique, version, [4, 1], cold) == 1

    view = _client(local_stack, unique).current()
    got = view.vectors([1, 4, 5])
    assert sorted(got) == [1, 4]
    np.testing.assert_array_equal(got[1], vectors[0])  # a published vector never changes
    np.testing.assert_array_equal(got[4], cold[0])
    assert view.cold([1, 4]) == {4}
    assert (view.meta()["count"], view.meta()["cold_count"]) == (4, 1)


def _exact(items: list[int], vectors: np.ndarray, item: int, k: int) -> list[int]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit[items.index(item)]
    return [items[i] for i in np.argsort(-scores, kind="stable") if items[i] != item][:k]


def _published(
    redis_client: redis.Redis, prefix: str, n: int, seed: int
) -> tuple[list[int], npt.NDArray[np.float32], int]:
    """Items 100 to 100 + n - 1 with seeded random vectors, published as one version."""
    items = list(range(100, 100 + n))
    vectors = np.random.default_rng(seed).standard_normal((len(items), 8)).astype(np.float32)
    return items, vectors, publish_version(redis_client, prefix, items, vectors, [], {})


def _three_hundred(
    redis_client: redis.Redis, prefix: str
) -> tuple[list[int], npt.NDArray[np.float32], int]:
    """Items 100-399, fewer than `EXACT_BELOW`: readers scan the index's rows exactly."""
    return _published(redis_client, prefix, 300, seed=3)


def test_similar_answers_from_the_version_index_and_sees_cold_items(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    items, vectors, version = _three_hundred(redis_client, unique)
    meta = redis_client.hmget(VersionKeys(unique).meta(version), ["index_count", "index_digest"])
    assert meta[0] == b"300"
    assert meta[1] is not None
    client = _client(local_stack, unique)

    found = client.similar(100, k=5)
    assert [item for item, _ in found] == _exact(items, vectors, 100, 5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert found[0][1] == pytest.approx(float(unit[found[0][0] - 100] @ unit[0]), abs=1e-5)
    assert client.similar(99, k=5) == []
    assert client.similar_many([100, 99, 101], k=5) == [
        found,
        [],
        client.similar(101, k=5),
    ]
    assert client.nearest(vectors[0], k=1) == [(100, pytest.approx(1.0, abs=1e-5))]

    # a cold item joins the version after its index was built: searched exactly, merged in
    twin = vectors[:1] * 2
    add_to_version(redis_client, unique, version, [7], twin)
    assert client.similar(100, k=1) == [(7, pytest.approx(1.0, abs=1e-5))]
    assert client.similar(7, k=1) == [(100, pytest.approx(1.0, abs=1e-5))]


def test_similar_searches_the_graph_of_a_larger_version(local_stack: Settings, unique: str) -> None:
    """A version of at least `EXACT_BELOW` items is searched through its graph, built on every
    core by the publisher (so not deterministic): recall@10 against exact cosine at least 0.99
    (the goal in docs/benchmarks.md; a broken graph scores near 0), every score exact."""
    redis_client = connect(local_stack.redis)
    items, vectors, version = _published(redis_client, unique, 2 * EXACT_BELOW, seed=5)
    client = _client(local_stack, unique)
    found = client.similar_many(items, k=10)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    hits = 0
    for item, row in zip(items, found, strict=True):
        assert len(row) == 10
        hits += len({other for other, _ in row} & set(_exact(items, vectors, item, 10)))
        for other, score in row:
            assert score == pytest.approx(float(unit[other - 100] @ unit[item - 100]), abs=1e-5)
    assert hits / (10 * len(items)) >= 0.99
    # a cold item joins the version after its graph was built: scanned exactly, merged in
    # ahead of the graph's answer, which stays as it was
    add_to_version(redis_client, unique, version, [7], vectors[:1] * 2)
    assert client.similar(100, k=11) == [(7, pytest.approx(1.0, abs=1e-5)), *found[0]]


def test_the_client_keeps_a_version_loaded_until_the_version_changes(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    vectors = np.eye(3, dtype=np.float32) + 0.1
    publish_version(redis_client, unique, [1, 2, 3], vectors, [], {})
    client = _client(local_stack, unique)
    first = client.current()
    client.similar(1, k=2)
    assert client.current() is first
    second = publish_version(
        redis_client, unique, [1, 2, 3, 4], np.ones((4, 3), np.float32), [], {}
    )
    assert client.current() is not first
    assert client.current().version == second
    assert {item for item, _ in client.similar(1, k=3)} == {2, 3, 4}
    # a switch between two calls: the next call answers from the new version
    publish_version(redis_client, unique, [1, 5], np.ones((2, 3), np.float32), [], {})
    assert client.similar_many([1, 2], k=3) == [[(5, pytest.approx(1.0))], []]
    assert client.similar_many([], k=3) == []


def test_a_version_without_an_index_is_scanned_exactly(local_stack: Settings, unique: str) -> None:
    redis_client = connect(local_stack.redis)
    rng = np.random.default_rng(4)
    items = list(range(50))
    vectors = rng.standard_normal((50, 4)).astype(np.float32)
    version = write_version(redis_client, unique, items, vectors, [], {})
    switch_to(redis_client, unique, version)
    client = _client(local_stack, unique)
    assert [item for item, _ in client.similar(3, k=4)] == _exact(items, vectors, 3, 4)


def test_a_damaged_index_is_refused_and_one_in_the_former_format_scanned(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    items, vectors, version = _three_hundred(redis_client, unique)
    keys = VersionKeys(unique)
    rows = redis_client.get(keys.index_rows(version))
    graph = redis_client.get(keys.index(version))
    redis_client.delete(keys.index_rows(version))  # rows lost: damaged, not a former format
    with pytest.raises(StoreError, match="does not match its digest"):
        _client(local_stack, unique).similar(100, k=5)
    redis_client.set(keys.index_rows(version), rows[:-1])  # truncated
    with pytest.raises(StoreError, match="does not match its digest"):
        _client(local_stack, unique).similar(100, k=5)
    # the former format: one graph, its digest over the graph alone, no rows key
    redis_client.delete(keys.index_rows(version))
    former = hashlib.blake2b(graph, digest_size=32).hexdigest()
    redis_client.hset(keys.meta(version), "index_digest", former)
    client = _client(local_stack, unique)
    assert [item for item, _ in client.similar(100, k=5)] == _exact(items, vectors, 100, 5)
    add_to_version(redis_client, unique, version, [7], vectors[:1] * 2)  # grows: still scanned
    assert client.similar(100, k=1) == [(7, pytest.approx(1.0, abs=1e-5))]


def test_the_vector_set_answers_vsim_like_the_exact_search(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    items, vectors, version = _three_hundred(redis_client, unique)
    assert supports_vector_sets(redis_client)
    assert build_vector_set(redis_client, unique, version) == len(items)
    assert _client(local_stack, unique).current().meta()["vector_set"] == "ready"
    reply = redis_client.execute_command(
        "VSIM", VersionKeys(unique).vector_set(version), "ELE", 100, "COUNT", 6, "WITHSCORES"
    )
    found = [int(item) for item in reply[::2] if int(item) != 100]
    # Vector sets store int8-quantized vectors: near-ties may swap
    assert len(set(found) & set(_exact(items, vectors, 100, 5))) >= 4


def test_follow_yields_each_new_version(local_stack: Settings, unique: str) -> None:
    redis_client = connect(local_stack.redis)
    vectors = np.ones((1, 2), dtype=np.float32)
    first = publish_version(redis_client, unique, [1], vectors, [], {})
    versions = _client(local_stack, unique).follow(block_s=10)
    assert next(versions).version == first
    second = publish_version(redis_client, unique, [1], 2 * vectors, [], {})
    third = publish_version(redis_client, unique, [1], 3 * vectors, [], {})
    views = [next(versions), next(versions)]
    assert [view.version for view in views] == [second, third]
    assert float(views[1].vector(1)[0]) == 3.0


def test_a_vanished_version_is_an_error_not_an_empty_answer(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    version = publish_version(redis_client, unique, [1], np.ones((1, 2), np.float32), [], {})
    view = _client(local_stack, unique).current()
    redis_client.delete(*VersionKeys(unique).of_version(version))
    with pytest.raises(StoreError, match="read the current version again"):
        view.vectors([1])


def test_no_version_yet_says_what_to_do(local_stack: Settings, unique: str) -> None:
    client = _client(local_stack, unique)
    assert client.version is None
    with pytest.raises(StoreError, match="start the trainer"):
        client.vectors([1])


def test_a_preloading_client_has_the_next_version_loaded_before_its_switch(
    local_stack: Settings, unique: str
) -> None:
    redis_client = connect(local_stack.redis)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((100, 4)).astype(np.float32)
    publish_version(redis_client, unique, range(100), vectors, [], {})
    client = _client(local_stack, unique)
    client.preload(block_s=0.2)
    try:
        # the preloader reads announcements made after it started: announce until it has one
        version = prepare_version(redis_client, unique, range(100), 2 * vectors, [], {})

        def loaded() -> bool:
            announce_prepared(redis_client, unique, version)
            return client.preloaded == version

        poll(loaded, 30, "the preloader to load the announced version")
        assert client.version != version  # not current yet
        switch_to(redis_client, unique, version)
        view = client.current()
        assert view.version == version
        assert view._loaded is not None  # loaded before the switch, not by this query
        assert [item for item, _ in view.similar(3, k=4)] == _exact(list(range(100)), vectors, 3, 4)
    finally:
        client.close()
