"""Big numbers (docs/design.md#capacity): eviction, expiry, withdrawal, unblocking,
reconciliation and adoption of 100,000 entries at once, against a real Redis and the ZIA
emulator; a run cut short part way leaves the ledger saying what the category holds.

Every Redis write carrying entries is bounded (threatshare/state/chunks.py): a single write of
10,000 members inside a Lua script used to fail (``too many results to unpack``). The
tests use ZIA's largest batch so that ZIA's one-PUT-a-second limit costs seconds, not minutes;
entries are put in the category the cheap way where the test is not about pushing them (an
admin's edit the instance adopts, as it does any entry of a category that names it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import FAST
from tests.sync.lifecycle_world import CATEGORY, DAY, Life, make_life
from threatshare import cli
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.state.ledger import Ledger
from threatshare.sync.change import Accepted, CategoryChange
from threatshare.zia.categories import category_description

BATCH = 10_000  # ZIA's largest batch: the fewest PUTs at one a second
HUNDRED_K = 100_000


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


def _generated(life: Life, prefix: str, count: int, start: datetime, end: datetime) -> None:
    """Mimecast serves ``count`` records of distinct URLs over [start, end), oldest first."""

    def make(index: int, date: str) -> dict[str, Any]:
        return url_log(f"https://{prefix}{index}.big.example/p", date)

    life.world.sandbox.mimecast.set_url_log_generator(count, start, end, make)


def _entries(prefix: str, count: int, domain: str = "big.example") -> list[str]:
    return [f"{prefix}{i}.{domain}/p" for i in range(count)]


def _ledger(life: Life) -> set[str]:
    return set(Ledger(life.redis).scan("life"))


def _scenario(life: Life, scale: int) -> None:
    """Quota 40,000 × scale, no reserve: 20,000 × scale shared, then 30,000 × scale newer ones
    arrive; the second run must evict 10,000 × scale of its own."""
    quota, first, second = 40_000 * scale, 20_000 * scale, 30_000 * scale
    life.zia.url_quota = quota
    life.configure(
        tenant={"quota_reserve": 0},
        batch_size=BATCH,
        fetch_from="3h",
        settings={"reconcile_every": "60d", "run_deadline": "30m"},
    )
    now = life.clock.now
    _generated(life, "old", first, now - timedelta(minutes=150), now - timedelta(minutes=90))
    one = life.run()
    assert (one.outcome, one.counters["pushed"]) == ("ok", first), one.error
    life.clock.advance(timedelta(hours=1))
    now = life.clock.now
    _generated(life, "new", second, now - timedelta(minutes=50), now - timedelta(minutes=5))
    two = life.run()
    assert two.outcome == "ok" and two.error is None, two.error
    evicted = first + second - quota
    assert two.counters["pushed"] == second and two.counters["removed"] == evicted
    # The newest: every new entry, and the most recently seen of the old ones.
    newest = set(_entries("new", second)) | set(_entries("old", first)[evicted:])
    active = life.active()
    assert len(active) == quota and active == newest
    assert _ledger(life) == newest
    assert life.status()["lifecycle"]["evicted"] == evicted
    assert life.status()["quota"]["used"] == quota


def test_a_second_run_evicting_10_000_ends_ok_with_the_40_000_newest(life: Life) -> None:
    """20,000 shared on a quota of 40,000, then 30,000 newer: run 2 evicts 10,000 of its own
    and ends ok with exactly the 40,000 newest active, the ledger saying the same."""
    _scenario(life, 1)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 700,000 entries through ZIA's emulator and Redis: minutes, not hours
def test_the_same_at_ten_times_the_sizes(life: Life) -> None:
    """200,000 shared on a quota of 400,000, then 300,000 newer: run 2 evicts 100,000 and
    ends ok with exactly the 400,000 newest active."""
    _scenario(life, 10)


def _fill(life: Life, entries: list[str], *, create: bool = False) -> None:
    """``entries`` put in the category by an admin and adopted by the next run (the category's
    description names the instance)."""
    if create:
        life.zia.admin_create(CATEGORY, entries, category_description("life"))
    else:
        life.zia.admin_edit(CATEGORY, add=entries)
    life.clock.advance(timedelta(hours=2))  # reconciliation is due again
    result = life.run()
    assert result.outcome == "ok", result.error
    assert _ledger(life) >= set(entries)


@pytest.mark.slow
def test_100_000_entries_adopted_removed_by_hand_expired_withdrawn_and_unblocked(
    life: Life,
) -> None:
    """Each of adoption, reconciliation with a hand removal, expiry, withdrawal and an
    unblock handles 100,000 entries at once: the run ends ok and the category, the ledger and
    the quota reading agree."""
    life.zia.url_quota = 250_000
    life.configure(batch_size=BATCH, expire_after="3d", settings={"reconcile_every": "1h"})
    adopted = _entries("a", HUNDRED_K)
    _fill(life, adopted, create=True)
    assert _ledger(life) == set(adopted)

    life.zia.admin_edit(CATEGORY, remove=adopted)
    life.clock.advance(timedelta(hours=2))
    result = life.run()
    assert result.outcome == "ok", result.error
    assert _ledger(life) == set() and life.status()["lifecycle"]["removed_by_hand"] == HUNDRED_K

    expiring = _entries("e", HUNDRED_K)
    _fill(life, expiring)
    life.clock.advance(4 * DAY)
    result = life.run()
    assert result.outcome == "ok" and result.counters["removed"] == HUNDRED_K, result.error
    assert life.active() == set() and _ledger(life) == set()
    assert life.status()["lifecycle"]["expired"] == HUNDRED_K

    withdrawn = _entries("w", HUNDRED_K, "withdrawn.example")
    _fill(life, withdrawn)
    life.configure(
        batch_size=BATCH,
        expire_after="3d",
        allow=["withdrawn.example"],
        settings={"reconcile_every": "1h"},
    )
    result = life.run()
    assert result.outcome == "ok" and result.counters["removed"] == HUNDRED_K, result.error
    assert life.active() == set() and _ledger(life) == set()

    unblocked = _entries("u", HUNDRED_K, "unblocked.example")
    _fill(life, unblocked)
    path = life.world.tmp / "threatshare.toml"
    assert cli.main(["--config", str(path), "unblock", "life", "unblocked.example", "--yes"]) == 0
    assert life.active() == set() and _ledger(life) == set()
    assert life.zia.quota()["uniqueUrlsProvisioned"] == 0


def test_a_run_cut_short_while_evicting_leaves_the_ledger_as_the_category(
    life: Life, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ZIA fails for good after the first of two eviction batches: the run ends retrying, the
    5,000 removals ZIA accepted are forgotten, the rest still recorded, and the next run
    finishes the job with the 40,000 newest."""
    life.zia.url_quota = 40_000
    life.configure(
        tenant={"quota_reserve": 0},
        batch_size=BATCH // 2,
        fetch_from="3h",
        settings={"reconcile_every": "60d", "run_deadline": "30m"},
    )
    now = life.clock.now
    _generated(life, "old", 20_000, now - timedelta(minutes=150), now - timedelta(minutes=90))
    assert life.run().outcome == "ok"
    life.clock.advance(timedelta(hours=1))
    now = life.clock.now
    _generated(life, "new", 30_000, now - timedelta(minutes=50), now - timedelta(minutes=5))
    removals: list[Accepted] = []
    original = CategoryChange.accepted

    def fail_after_one(self: CategoryChange, change: Accepted, sightings: Any = None) -> None:
        original(self, change, sightings)
        if change.action == "removed":
            removals.append(change)
            if len(removals) == 1:
                life.zia.fail_next("500", FAST.max_attempts, path="/urlCategories/{id}")

    monkeypatch.setattr(CategoryChange, "accepted", fail_after_one)
    cut = life.run()
    assert cut.outcome == "retrying", cut.counters
    assert sum(len(c.entries) for c in removals) == 5_000
    assert _ledger(life) == life.zia.staged_urls(CATEGORY)
    assert len(_ledger(life)) == 15_000
    monkeypatch.setattr(CategoryChange, "accepted", original)
    life.clock.advance(timedelta(minutes=10))
    again = life.run()
    assert again.outcome == "ok", again.error
    newest = set(_entries("new", 30_000)) | set(_entries("old", 20_000)[10_000:])
    assert life.active() == newest and _ledger(life) == newest
