"""The lifecycle of a block list end to end (docs/design.md#expiry): expiry, capacity, quota
warnings, reconciliation with hand edits, a lost Redis, category creation; against the ZIA emulator
with its quota, limits and activation, a real Redis and SMTP, on a clock the test drives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.sync.lifecycle_world import CATEGORY, DAY, Life, make_life, urls
from threatshare.state.ledger import Ledger
from threatshare.zia.categories import category_description, names_us
from threatshare.zia.client import Quota, ZiaClient


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


class TestExpiry:
    def test_an_unseen_entry_leaves_and_a_resighted_one_stays(self, life: Life) -> None:
        """An entry Mimecast has not reported for expire_after is removed (one REMOVE, one
        activation, no quota read); one reported again meanwhile stays; a run with nothing due
        and nothing new makes no ZIA call at all."""
        life.configure(expire_after="3d", settings={"reconcile_every": "60d"})
        life.threats(["https://stale.example/a", "https://kept.example/b"])
        assert life.run().state == "ok"
        assert life.active() == {"stale.example/a", "kept.example/b"}
        life.clock.advance(2 * DAY)
        life.threats(["https://kept.example/b"])
        life.run()
        life.clock.advance(DAY + timedelta(hours=12))
        before = life.calls()
        result = life.run()
        assert result.state == "ok" and result.counters["removed"] == 1
        assert life.active() == {"kept.example/b"}
        assert life.buckets_since(before) == ["PUT /urlCategories/{id}", "POST /status/activate"]
        before = life.calls()
        assert life.run().state == "ok"
        assert life.calls() == before
        lifecycle = life.status()["lifecycle"]
        assert lifecycle["expired"] == 1 and lifecycle["expire_after"] == "3d"
        assert lifecycle["next_expiry"] is not None

    def test_never_when_expire_after_is_zero(self, life: Life) -> None:
        """With expire_after "0" nothing expires, however old."""
        life.configure(expire_after="0")
        life.threats(["https://forever.example/a"])
        life.run()
        life.clock.advance(90 * DAY)
        assert life.run().counters["removed"] == 0
        assert life.active() == {"forever.example/a"}
        assert life.status()["lifecycle"]["next_expiry"] is None


class TestCapacity:
    def test_a_burst_beyond_capacity_keeps_the_newest_stays_ok_and_mails_once(
        self, life: Life
    ) -> None:
        """1,000 free slots, 5% reserved, 3,000 new threats: the newest 950 are shared, the
        rest counted as capacity, state ok, one "at capacity" e-mail; a second burst sends no
        second one."""
        life.zia.url_quota = 1000
        burst = urls("burst", 3000)  # record times increase: the last ones are the newest
        life.threats(burst, ago=timedelta(hours=1))
        result = life.run()
        assert result.state == "ok"
        assert result.counters["pushed"] == 950
        assert result.counters["skipped_by_reason"]["capacity"] == 2050
        newest = {u.removeprefix("https://") for u in burst[-950:]}
        assert life.active() == newest
        capacity_mails = [
            m for m in life.world.sandbox.smtp.messages if m.message["Subject"].endswith("capacity")
        ]
        assert [m.message["Subject"] for m in capacity_mails] == ["[threatshare] life at capacity"]
        body = capacity_mails[0].message.get_content()
        assert "could not share 2,050 new threats" in " ".join(body.split())
        life.clock.advance(timedelta(hours=1))
        life.threats(urls("second", 2000))
        second = life.run()
        assert second.state == "ok"
        assert second.counters["pushed"] == 950  # newest win: all 950 old ones evicted
        assert life.status()["lifecycle"]["evicted"] == 950
        assert life.subjects().count("[threatshare] life at capacity") == 1

    def test_an_admin_category_is_never_touched_nor_its_reserve_taken(self, life: Life) -> None:
        """An admin's category keeps its entries, and the tenant keeps quota_reserve free."""
        life.zia.url_quota = 1000
        admin = [f"admin{i}.example" for i in range(200)]
        life.zia.admin_create("Admin Blocks", admin, "kept by hand")
        life.configure(tenant={"quota_reserve": 100})
        life.threats(urls("t", 1500))
        assert life.run().state == "ok"
        life.clock.advance(DAY)
        life.threats(urls("u", 1500))
        assert life.run().state == "ok"
        assert life.zia.staged_urls("Admin Blocks") == set(admin)
        assert life.zia.quota()["remainingUrlsQuota"] == 100
        assert len(life.active()) == 700
        quota = life.status()["quota"]
        assert (quota["used"], quota["remaining"], quota["reserve"]) == (900, 100, 100)

    def test_quota_taken_after_it_was_read_leaves_the_rest_out_not_halted(
        self, life: Life, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When an admin takes the quota between the run's reading and its push, ZIA refuses
        what does not fit: it is counted as capacity and the instance stays ok."""
        life.zia.url_quota = 100
        life.configure(tenant={"quota_reserve": 0}, batch_size=10)
        real_quota = ZiaClient.quota

        def read_then_taken(client: ZiaClient) -> Quota:
            quota = real_quota(client)
            life.zia.admin_create("Admin Rush", [f"rush{i}.example" for i in range(95)])
            return quota

        monkeypatch.setattr(ZiaClient, "quota", read_then_taken)
        life.threats(urls("late", 30))
        result = life.run()
        assert result.state == "ok"
        assert result.counters["pushed"] == 0
        assert result.counters["skipped_by_reason"]["capacity"] == 30
        assert life.zia.staged_urls("Admin Rush") and life.zia.quota()["remainingUrlsQuota"] == 5

    def test_max_entries_caps_the_category(self, life: Life) -> None:
        """max_entries caps the category even with quota to spare."""
        life.configure(max_entries=10)
        life.threats(urls("cap", 25))
        result = life.run()
        assert result.state == "ok" and len(life.active()) == 10
        assert result.counters["skipped_by_reason"]["capacity"] == 15


class TestQuotaWarning:
    def test_one_warning_per_crossing_with_shares(self, life: Life) -> None:
        """Crossing quota_warn sends one warning naming each category's share; staying above
        sends nothing; falling 5 points below re-arms it, and the next crossing warns again."""
        life.zia.url_quota = 100
        life.zia.admin_create("Admin Blocks", [f"a{i}.example" for i in range(10)])
        life.configure(expire_after="1d", tenant={"quota_warn": 50, "quota_reserve": 0})
        life.threats(urls("w", 45))
        life.run()
        warning = "[threatshare] ZIA tenant prod: custom URL quota 55% used"
        assert life.subjects() == [warning]
        body = " ".join(life.world.sandbox.smtp.messages[0].message.get_content().split())
        assert "Lifecycle URLs 45 (45%)" in body and "Admin Blocks 10 (10%)" in body
        life.clock.advance(timedelta(hours=2))
        life.threats(urls("x", 5))
        life.run()
        assert life.subjects() == [warning]
        life.clock.advance(2 * DAY)  # everything of ours expires: 10% used
        life.threats(urls("y", 2))
        life.run()
        life.clock.advance(timedelta(hours=2))
        life.threats(urls("z", 50))
        life.run()
        assert len(life.subjects()) == 2
        assert life.subjects()[1].startswith("[threatshare] ZIA tenant prod: custom URL quota")


class TestReconciliation:
    def test_an_entry_removed_by_hand_comes_back_only_for_a_newer_record(self, life: Life) -> None:
        """Removed by hand in ZIA, an entry is dropped from the record at reconciliation and
        not pushed for a record older than the removal; a newer record brings it back."""
        life.threats(["https://fp.example/a", "https://bad.example/b"])
        life.run()
        life.zia.admin_edit(CATEGORY, remove=["fp.example/a"])
        life.clock.advance(DAY)
        life.run()  # reconciles: one GET
        assert life.status()["lifecycle"]["removed_by_hand"] == 1
        assert life.status()["category"]["entries"] == 1
        # A record from before the removal, in the next window's overlap.
        life.threats(["https://fp.example/a"], ago=timedelta(minutes=2))
        life.clock.advance(timedelta(minutes=1))
        result = life.run()
        assert result.counters["skipped_by_reason"]["removed_by_hand"] == 1
        assert "fp.example/a" not in life.zia.staged_urls(CATEGORY)
        life.clock.advance(timedelta(hours=1))
        life.threats(["https://fp.example/a"], ago=timedelta(minutes=2))
        assert life.run().counters["pushed"] == 1
        assert "fp.example/a" in life.active()

    def test_a_category_deleted_by_hand_is_recreated_and_refilled(self, life: Life) -> None:
        """A category deleted in ZIA is created again at the next reconciliation, holding every
        live entry, and no other category appears."""
        entries = life.threats(urls("r", 5))
        life.run()
        life.zia.admin_delete(CATEGORY)
        life.clock.advance(DAY)
        result = life.run()
        assert result.state == "ok"
        assert life.active() == entries
        assert [c["configuredName"] for c in life.zia.categories()] == [CATEGORY]

    def test_after_flushall_the_category_is_adopted_and_expires_on_schedule(
        self, life: Life
    ) -> None:
        """After Redis is wiped the next run finds the category by name (no duplicate), adopts
        its entries, and they expire expire_after later: nothing is left behind for ever."""
        life.configure(expire_after="3d")
        entries = life.threats(urls("f", 4))
        life.run()
        life.redis.flushall()
        life.clock.advance(timedelta(hours=1))
        assert life.run().state == "ok"
        assert len(life.zia.categories()) == 1
        assert set(Ledger(life.redis).scan("life")) == entries
        life.clock.advance(2 * DAY)
        life.run()
        assert life.active() == entries
        life.clock.advance(DAY + timedelta(hours=2))
        assert life.run().counters["removed"] == 4
        assert life.active() == set()

    def test_entries_of_a_category_not_naming_us_are_foreign_and_left_alone(
        self, life: Life
    ) -> None:
        """In a category whose description does not name threatshare and the instance, the
        entries threatshare did not push are counted as foreign and never removed."""
        life.zia.admin_create(CATEGORY, ["admin-owned.example"], "made by the SOC")
        life.configure(expire_after="1d")
        life.threats(["https://ours.example/x"])
        life.run()
        assert life.status()["lifecycle"]["foreign"] == 1
        life.clock.advance(3 * DAY)
        life.run()
        assert life.zia.staged_urls(CATEGORY) == {"admin-owned.example"}
        assert life.status()["lifecycle"]["expired"] == 1


class TestCreation:
    def test_created_with_the_first_batch_where_empty_creation_is_refused(self, life: Life) -> None:
        """Where the tenant refuses an empty category, a run with nothing to push creates
        nothing (and asks once); the first run with entries creates it holding them, in one
        POST, with no placeholder."""
        life.zia.refuse_empty_categories = True
        assert life.run().state == "ok"
        assert life.zia.categories() == []
        before = life.calls()
        assert life.run().state == "ok"
        assert life.calls() == before
        life.clock.advance(timedelta(hours=1))
        entries = life.threats(["https://first.example/a", "https://second.example/b"])
        assert life.run().state == "ok"
        assert life.zia.staged_urls(CATEGORY) == entries
        posts = [c for c in life.zia.calls if c.bucket == "POST /urlCategories"]
        assert [c.status for c in posts] == [400, 200]
        assert life.zia.categories()[0]["description"] == category_description("life")

    def test_created_empty_where_allowed_then_no_calls(self, life: Life) -> None:
        """Where empty creation is allowed the first run creates the category empty; later
        runs with nothing to do make no ZIA call."""
        life.run()
        assert [c["configuredName"] for c in life.zia.categories()] == [CATEGORY]
        before = life.calls()
        life.clock.advance(timedelta(minutes=5))
        life.run()
        assert life.calls() == before


def test_a_description_names_one_instance_exactly() -> None:
    """A category is ours only when its description names this very instance."""
    mine = category_description("urls", "Malicious URLs")
    assert names_us(mine, "urls")
    assert not names_us(mine, "url")
    assert not names_us("Blocked by the SOC", "urls")
