from streaming.core.item_cache import ItemCache


def test_least_recently_used_items_go_first_when_over_budget() -> None:
    cache: ItemCache[str] = ItemCache(budget=6, size=len)
    cache.put(1, "aa")
    cache.put(2, "bb")
    cache.put(3, "cc")
    assert cache.get(1) == "aa"  # now the newest
    cache.put(4, "d")
    assert [cache.get(item) for item in (1, 2, 3, 4)] == ["aa", None, "cc", "d"]


def test_a_value_put_again_is_counted_at_its_new_size() -> None:
    cache: ItemCache[str] = ItemCache(budget=5, size=len)
    cache.put(1, "a")
    cache.put(2, "b")
    cache.put(1, "aaaa")  # grew: 1 + 4 = 5 fits
    assert len(cache) == 2
    cache.put(2, "bb")  # 4 + 2 > 5: item 1, now the oldest, goes
    assert cache.get(1) is None
    assert cache.get(2) == "bb"


def test_the_newest_item_stays_even_when_alone_over_budget() -> None:
    cache: ItemCache[str] = ItemCache(budget=2, size=len)
    cache.put(1, "a")
    cache.put(2, "too big")
    assert cache.get(1) is None
    assert cache.get(2) == "too big"
    assert len(cache) == 1


def test_an_item_put_again_becomes_the_newest() -> None:
    cache: ItemCache[str] = ItemCache(budget=3, size=len)
    cache.put(1, "a")
    cache.put(2, "b")
    cache.put(1, "a2")  # 3 in all, and item 2 is now the oldest
    cache.put(3, "c")
    assert [cache.get(item) for item in (1, 2, 3)] == ["a2", None, "c"]


def test_a_removed_item_frees_its_size() -> None:
    cache: ItemCache[str] = ItemCache(budget=4, size=len)
    cache.put(1, "aa")
    cache.put(2, "bb")
    cache.remove(1)
    cache.remove(7)  # never held: nothing to do
    cache.put(3, "cc")  # 2 + 2 fits only because item 1's size was freed
    assert [cache.get(item) for item in (1, 2, 3)] == [None, "bb", "cc"]
