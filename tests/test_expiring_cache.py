import json

from flowlet.security.expiring import ENTRY_OVERHEAD, ExpiringCache, json_cost

BIG = 1 << 30     # a byte budget that never binds


def test_entries_stay_under_the_bound_and_newest_survive():
    cache: ExpiringCache = ExpiringCache(64, BIG)
    for i in range(1000):
        cache.put(i, 10_000, i, size=0, now=0)
        assert len(cache) <= 64
    assert cache.get(999, 0) == 999 and cache.get(0, 0) is None


def test_expired_entries_go_first():
    cache: ExpiringCache = ExpiringCache(64, BIG)
    for i in range(64):
        cache.put(i, 5 if i % 2 else 100, i, size=0, now=0)
    cache.put("new", 100, "v", size=0, now=10)
    assert all(k % 2 == 0 for k in cache if k != "new") and len(cache) == 33


def test_sweeps_are_rare_under_a_flood():
    # after one sweep at the bound there is room for limit // 8 inserts before the next one
    cache: ExpiringCache = ExpiringCache(64, BIG)
    for i in range(64):
        cache.put(i, 100, i, size=0, now=0)
    cache.put("a", 100, 0, size=0, now=0)
    assert len(cache) == 64 - 8 + 1


def test_an_entry_is_served_until_its_end_and_then_dropped():
    cache: ExpiringCache = ExpiringCache(8, BIG)
    cache.put("k", 10, "v", size=100, now=0)
    assert cache.get("k", 9.9) == "v"
    assert cache.get("k", 10) is None
    assert len(cache) == 0 and cache.size == 0


def test_total_size_stays_under_the_byte_bound_and_newest_survive():
    budget = 100 * (1000 + ENTRY_OVERHEAD)
    cache: ExpiringCache = ExpiringCache(10_000, budget)
    for i in range(1000):
        cache.put(i, 100, i, size=1000, now=0)
        assert cache.size <= budget
    assert len(cache) <= 100
    assert cache.get(999, 0) == 999 and cache.get(0, 0) is None


def test_size_follows_replacements_drops_and_clear():
    cache: ExpiringCache = ExpiringCache(8, BIG)
    cache.put("k", 100, "v", size=10, now=0)
    cache.put("k", 100, "w", size=30, now=0)
    assert cache.size == 30 + ENTRY_OVERHEAD and cache.get("k", 0) == "w"
    cache.clear()
    assert cache.size == 0 and len(cache) == 0


def test_an_entry_larger_than_the_whole_budget_is_not_kept():
    cache: ExpiringCache = ExpiringCache(8, 4096)
    cache.put("small", 100, 1, size=10, now=0)
    cache.put("huge", 100, 2, size=5000, now=0)
    assert cache.get("huge", 0) is None and cache.get("small", 0) == 1


def test_json_cost_grows_with_the_values_not_only_the_text():
    # texts of about one length: the one that decodes into many small objects costs more
    few = json.dumps({"a": "x" * 400}).encode()
    many = json.dumps({"a": [{}] * 100}).encode()
    assert abs(len(many) - len(few)) < 50
    assert json_cost(many) > 10 * json_cost(few)
    assert json_cost(few) >= len(few)
