"""Mimecast's clock is "now" (docs/design.md#mimecasts-clock), end to end: the product's clock
is driven apart from the emulators' (whose Date headers say Mimecast's time), and no record is
lost, nothing expires early, no bookmark runs ahead of Mimecast, the skew shows in status, a
bookmark in the future is an error shown in status, and real window endings end windows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from tests.e2e import FAST, World
from tests.sync.lifecycle_world import Clock
from threatshare import keys
from threatshare.config import Config
from threatshare.ops.metrics import families
from threatshare.ops.snapshot import take
from threatshare.ops.status import instance_status, render_table
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger
from threatshare.state.store import Store
from threatshare.sync import RunResult, sync_instance
from threatshare.sync.activation import activate_pending

CATEGORY = "Clock URLs"
INSTANCE: dict[str, Any] = {
    "zia": "prod",
    "category": CATEGORY,
    "sources": ["malicious_urls"],
    "fetch_from": "2h",
    "expire_after": "1d",
}
#: The clock's own reading error: one-second Date headers and the time an answer takes.
SLACK = timedelta(seconds=3)
MINUTE = timedelta(minutes=1)


@dataclass
class Skewed:
    """One instance whose product clock the test drives apart from Mimecast's."""

    world: World
    mimecast: Clock  # Mimecast's time: the emulator's Date headers
    product: Clock  # the product's own clock (the runtime's input)
    config: Config

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.world.redis_url)

    def skew(self, by: timedelta) -> None:
        """The product's clock is ``by`` ahead of Mimecast's (behind when negative)."""
        self.product.now = self.mimecast.now + by

    def advance(self, by: timedelta) -> None:
        """Time passes: both clocks move on together."""
        self.mimecast.advance(by)
        self.product.advance(by)

    def threat(self, url: str, at: datetime) -> str:
        self.world.sandbox.mimecast.add_url_logs([url_log(url, at)])
        return url.removeprefix("https://")

    def runtime(self) -> Runtime:
        return Runtime(self.config, self.redis, policy=FAST, zia_reauth_wait=0.05, now=self.product)

    def run(self, rt: Runtime | None = None) -> RunResult:
        own = rt is None
        rt = rt or self.runtime()
        try:
            result = sync_instance(rt, "clock")
            activate_pending(rt)
        finally:
            if own:
                rt.close()
        return result

    def active(self) -> set[str]:
        return self.world.sandbox.tenants["prod"].emulator.active_urls(CATEGORY)

    def bookmark(self) -> datetime:
        bookmark = Store(self.redis).load("clock").bookmark
        assert bookmark is not None
        return bookmark

    def status(self) -> dict[str, Any]:
        return instance_status(self.config, Store(self.redis), "clock")


@pytest.fixture
def skewed(tmp_path: Path, redis_url: str) -> Iterator[Skewed]:
    with Sandbox(tenant_names=("prod",)) as sandbox:
        world = World(sandbox, tmp_path, redis_url)
        mimecast = Clock(datetime.now(UTC).replace(microsecond=0))
        sandbox.mimecast.clock = mimecast
        product = Clock(mimecast.now)
        yield Skewed(world, mimecast, product, world.config({"clock": INSTANCE}))


class TestSkewedWorker:
    @pytest.mark.parametrize("skew", [timedelta(minutes=10), -timedelta(minutes=10)])
    def test_ten_minutes_either_way_loses_nothing_and_expires_nothing_early(
        self, skewed: Skewed, skew: timedelta
    ) -> None:
        """With the product's clock 10 minutes ahead of or behind Mimecast's: a record
        stamped a minute before Mimecast's now is shared by that run, the bookmark is
        Mimecast's now (never the worker's), a record stamped just after it is shared by the
        next run, and an entry expires when Mimecast's clock says it is due, not before."""
        t0 = skewed.mimecast.now
        first = skewed.threat("https://first.clock.example/a", t0 - MINUTE)
        skewed.skew(skew)
        assert skewed.run().state == "ok"
        assert skewed.active() == {first}
        assert abs(skewed.bookmark() - t0) <= SLACK
        late = skewed.threat("https://late.clock.example/b", t0 + MINUTE)
        skewed.advance(5 * MINUTE)
        assert skewed.run().state == "ok"
        assert skewed.active() == {first, late}
        assert abs(skewed.bookmark() - skewed.mimecast.now) <= SLACK
        # "first" was last seen at t0 - 1 min: due a day after that by Mimecast's clock.
        skewed.advance(timedelta(days=1) - 7 * MINUTE)
        assert skewed.run().counters["removed"] == 0
        assert skewed.active() == {first, late}
        skewed.advance(2 * MINUTE)
        assert skewed.run().counters["removed"] == 1
        assert skewed.active() == {late}

    def test_a_year_ahead_expires_nothing_and_keeps_the_bookmark_on_mimecasts_clock(
        self, skewed: Skewed
    ) -> None:
        """A worker a year ahead expires none of the live entries, moves the bookmark to
        Mimecast's now (not a year on), logs its skew once for two runs, and status shows
        the skew in the JSON record and in the table."""
        t0 = skewed.mimecast.now
        shared = skewed.threat("https://kept.clock.example/a", t0 - 10 * MINUTE)
        assert skewed.run().state == "ok"
        skewed.advance(5 * MINUTE)
        year = timedelta(days=365)
        skewed.skew(year)
        rt = skewed.runtime()
        try:
            with capture_logs() as logs:
                first, second = skewed.run(rt), skewed.run(rt)
        finally:
            rt.close()
        assert first.state == second.state == "ok"
        assert first.counters["removed"] == second.counters["removed"] == 0
        assert skewed.active() == {shared}
        assert abs(skewed.bookmark() - skewed.mimecast.now) <= SLACK
        warnings = [e for e in logs if e["event"] == "clock.skew"]
        assert len(warnings) == 1 and warnings[0]["mimecast"] == "main"
        record = skewed.status()
        assert abs(record["clock_skew_seconds"] - year.total_seconds()) <= SLACK.seconds
        table = render_table([record], skewed.mimecast.now)
        assert "ahead of Mimecast's" in table and str(record["clock_skew_seconds"]) in table
        snapshot = take(skewed.config, skewed.redis, lambda: skewed.mimecast.now)
        (gauge,) = [f for f in families(snapshot) if f.name.endswith("clock_skew_seconds")]
        assert [s.value for s in gauge.samples] == [record["clock_skew_seconds"]]

    def test_a_small_skew_is_shown_but_not_called_out(self, skewed: Skewed) -> None:
        """A worker whose clock agrees with Mimecast's shows a skew of about 0 seconds in the
        JSON record and no skew line in the table."""
        skewed.skew(timedelta(seconds=20))
        assert skewed.run().state == "ok"
        record = skewed.status()
        assert abs(record["clock_skew_seconds"] - 20) <= SLACK.seconds
        assert "Mimecast's" not in render_table([record], skewed.mimecast.now)

    def test_a_record_dated_in_the_future_counts_as_seen_at_the_window_end(
        self, skewed: Skewed
    ) -> None:
        """A record dated ten years ahead is shared, recorded as seen at the window's end,
        and expires like any other: no upstream date makes an entry permanent."""
        t0 = skewed.mimecast.now
        url = "https://future.clock.example/a"
        # Stamped (found by queries) half an hour ago, whatever date the record itself says:
        # before the next window's overlap, so only this run sees it.
        skewed.world.sandbox.mimecast.add_url_logs(
            [url_log(url, t0 + timedelta(days=3650))], stamped=t0 - 30 * MINUTE
        )
        forever = url.removeprefix("https://")
        assert skewed.run().state == "ok"
        assert forever in skewed.active()
        (seen,) = Ledger(skewed.redis).last_seen("clock", [forever])
        assert seen is not None and abs(seen - skewed.bookmark().timestamp()) <= 1
        skewed.advance(timedelta(days=1, minutes=1))
        assert skewed.run().counters["removed"] == 1
        assert forever not in skewed.active()


class TestBookmarkInTheFuture:
    def test_a_future_bookmark_is_an_error_in_status_and_is_repaired(self, skewed: Skewed) -> None:
        """A bookmark a year ahead of Mimecast's now (left by a worker whose clock was) is
        not trusted: the run shares what Mimecast kept since (a record it would have skipped
        is shared), sets the bookmark from Mimecast's clock and ends retrying with
        bookmark_in_future, which status shows; the next run is ok."""
        t0 = skewed.mimecast.now
        missed = skewed.threat("https://missed.clock.example/a", t0 - timedelta(hours=10))
        future = t0 + timedelta(days=365)
        skewed.redis.hset(keys.instance_state("clock"), "bookmark", future.isoformat())
        assert "365d ahead" in render_table([skewed.status()], t0)
        result = skewed.run()
        assert result.outcome == "retrying" and result.state == "retrying"
        assert result.error is not None and result.error["code"] == "bookmark_in_future"
        record = skewed.status()
        assert record["state"] == "retrying"
        assert record["last_error"]["code"] == "bookmark_in_future"
        assert "later than Mimecast's now" in render_table([record], t0)
        assert missed in skewed.active()
        assert abs(skewed.bookmark() - t0) <= SLACK
        skewed.advance(MINUTE)
        assert skewed.run().state == "ok"
        assert skewed.status()["last_error"] is None

    def test_no_run_moves_the_bookmark_past_mimecasts_now(self, skewed: Skewed) -> None:
        """However far ahead the worker's clock, the bookmark a run leaves is at most
        Mimecast's now."""
        for skew in (timedelta(hours=1), timedelta(days=40), -timedelta(hours=1)):
            skewed.skew(skew)
            skewed.advance(MINUTE)
            assert skewed.run().state == "ok"
            assert skewed.bookmark() <= skewed.mimecast.now + SLACK


class TestRealEndings:
    @pytest.mark.parametrize("past_end", ["empty", "error", "repeat"])
    def test_a_trailing_empty_page_with_next_ends_the_window_cleanly(
        self, skewed: Skewed, past_end: Any
    ) -> None:
        """Windows that end with an empty page still carrying ``next`` (whatever its token
        then gives: nothing, an error, the same token) end complete: state ok, every record
        shared, the bookmark moved to the window's end."""
        t0 = skewed.mimecast.now
        skewed.world.sandbox.mimecast.past_end = past_end
        entries = {
            skewed.threat(f"https://r{i}.ending.example/x", t0 - MINUTE * (i + 1)) for i in range(3)
        }
        result = skewed.run()
        assert result.state == "ok", result.error
        assert skewed.active() == entries
        assert abs(skewed.bookmark() - t0) <= SLACK
        trailing = [c for c in skewed.world.sandbox.mimecast.calls_to("url") if c.page_token]
        assert [c.records for c in trailing][-2:] == [0, 0] or past_end == "error"
