"""The extractor's decision caches are bounded by bytes, whatever the size of upstream URLs."""

from __future__ import annotations

from threatshare.indicators.cache import ByteBoundedCache
from threatshare.indicators.extract import URL_BUDGET, Extractor, Tally

URLS = 40_000
URL_BYTES = 8 * 1024


def test_forty_thousand_distinct_8_kb_urls_stay_within_the_budget() -> None:
    """40,000 distinct 8 KB URLs (320 MB of keys) leave the URL cache within its byte budget,
    and its decisions still come out right."""
    extractor = Extractor(["malicious_urls", "url_domains"])
    tally = Tally()
    path = "p" * 900  # an entry near ZIA's limit: the largest value a decision can hold
    query = "q" * (URL_BYTES - 920)
    accepted = set()
    for n in range(URLS):
        value = f"https://h{n % 97}.evil.example/{n}/{path}?{query}"
        assert len(value) >= URL_BYTES
        accepted.update(extractor.url_record({"url": value, "scanResult": "malicious"}, tally))
    cache = extractor._url_results
    assert cache.charged <= URL_BUDGET
    assert len(cache) < URLS  # the oldest went to make room
    assert len(accepted) == URLS + 97  # every URL entry and every host, decided right
    assert tally.pulled == URLS and not tally.rejected


def test_long_keys_are_kept_as_digests_and_the_oldest_leave_first() -> None:
    """A long key costs its digest, not its text; past the budget the oldest item goes."""
    calls: list[str] = []

    def compute(key: str) -> str:
        calls.append(key)
        return key[:10]

    cache = ByteBoundedCache(compute, len, budget=1000)
    long_key = "k" * 100_000
    assert cache(long_key) == "k" * 10
    assert cache.charged < 1000
    assert cache(long_key) == "k" * 10 and len(calls) == 1  # answered from the cache
    for n in range(20):
        cache(f"key-{n}")
    assert cache.charged <= 1000
    cache(long_key)
    assert len(calls) == 22  # it had been evicted, so it was computed again


def test_an_item_larger_than_the_budget_is_answered_but_not_kept() -> None:
    """A value bigger than the whole budget is returned and not cached."""
    cache = ByteBoundedCache(lambda key: key * 10, len, budget=500)
    assert cache("x" * 60) == "x" * 600
    assert len(cache) == 0 and cache.charged == 0
