from flowlet.security.expiring import remember


def test_entries_stay_under_the_bound_and_newest_survive():
    cache: dict = {}
    for i in range(1000):
        remember(cache, i, 10_000, i, limit=64, now=0)
        assert len(cache) <= 64
    assert 999 in cache and 0 not in cache


def test_expired_entries_go_first():
    cache: dict = {}
    for i in range(64):
        remember(cache, i, 5 if i % 2 else 100, i, limit=64, now=0)
    remember(cache, "new", 100, "v", limit=64, now=10)
    assert all(k % 2 == 0 for k in cache if k != "new") and len(cache) == 33


def test_sweeps_are_rare_under_a_flood():
    # after one sweep at the bound there is room for limit // 8 inserts before the next one
    cache: dict = {}
    for i in range(64):
        remember(cache, i, 100, i, limit=64, now=0)
    remember(cache, "a", 100, 0, limit=64, now=0)
    assert len(cache) == 64 - 8 + 1
