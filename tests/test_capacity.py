"""The arithmetic of room in the quota: capacity, who gives way, the warning's hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threatshare.capacity import (
    WarningState,
    capacity,
    daily_rate,
    excess,
    fill_forecast,
    least_recent,
    percent_used,
    quota_warning,
    reserve_slots,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class TestCapacity:
    @pytest.mark.parametrize(
        ("reserve", "total", "slots"), [(500, 25_000, 500), ("5%", 25_000, 1250), ("0.1%", 999, 1)]
    )
    def test_reserve_is_a_count_or_a_share_rounded_up(
        self, reserve: int | str, total: int, slots: int
    ) -> None:
        """A count reserves itself; a share reserves that part of the quota, rounded up."""
        assert reserve_slots(reserve, total) == slots

    def test_own_entries_plus_what_is_left_less_the_reserve(self) -> None:
        """Capacity is own + remaining − reserve: 1,000 free with 100 reserved holds 900 new."""
        assert capacity(own=0, remaining=1000, reserve=100, max_entries=None) == 900
        assert capacity(own=400, remaining=600, reserve=100, max_entries=None) == 900

    def test_max_entries_caps_and_nothing_is_negative(self) -> None:
        """max_entries caps the capacity; a quota taken by others gives 0, never less."""
        assert capacity(own=10, remaining=5000, reserve=0, max_entries=50) == 50
        assert capacity(own=0, remaining=100, reserve=250, max_entries=None) == 0

    def test_excess(self) -> None:
        """What must give way is whatever own + new exceeds the capacity by."""
        assert excess(own=900, new=3000, cap=1000) == 2900
        assert excess(own=10, new=5, cap=1000) == 0


class TestLeastRecent:
    def test_newest_win_across_own_and_new(self) -> None:
        """The least recently seen of both sets give way, in order of last sighting."""
        own = [("old.example", 1.0), ("mid.example", 5.0), ("late.example", 9.0)]
        new = [("stale-new.example", 3.0), ("fresh.example", 10.0)]
        losers = least_recent(own, new, 3)
        assert losers.evict == ["old.example", "mid.example"]
        assert losers.skip == ["stale-new.example"]

    def test_tie_keeps_what_is_already_in_the_category(self) -> None:
        """Seen at the same time, the new entry gives way (no call to swap equals)."""
        losers = least_recent([("in.example", 5.0)], [("new.example", 5.0)], 1)
        assert losers.skip == ["new.example"] and losers.evict == []

    def test_stops_when_both_run_out(self) -> None:
        """Asking for more than exists returns everything, no more."""
        losers = least_recent([("a.example", 1.0)], [("b.example", 2.0)], 5)
        assert losers.evict == ["a.example"] and losers.skip == ["b.example"]


class TestQuotaWarning:
    def test_one_warning_per_crossing_rearmed_five_points_below(self) -> None:
        """Crossing 80% warns once; hovering above or just below does not; falling under 75%
        re-arms, and the next crossing warns again with a new incident number."""
        state = WarningState()
        sent = []
        for percent in (70, 80, 85, 79, 81, 76, 74.9, 78, 80.5):
            send, state = quota_warning(percent, 80, state)
            sent.append(send)
        assert sent == [False, True, False, False, False, False, False, False, True]
        assert state.crossings == 2 and state.armed is False

    def test_percent_used(self) -> None:
        """Use in percent of the whole quota; an empty quota counts as full."""
        assert percent_used(20_000, 5_000) == 80.0
        assert percent_used(0, 0) == 100.0


class TestForecast:
    def test_fills_at_the_current_rate(self) -> None:
        """1,000 more URLs a day with 5,000 left fills in five days."""
        day = 86_400
        start = (NOW - timedelta(days=2)).timestamp()
        readings = [(start, 18_000), (start + day, 19_000), (start + 2 * day, 20_000)]
        assert fill_forecast(readings, 25_000, NOW) == NOW + timedelta(days=5)
        assert daily_rate(readings, NOW) == pytest.approx(1000.0)

    def test_no_forecast_when_not_growing_or_too_little_history(self) -> None:
        """Flat or falling use, a single reading, or only old readings give no forecast."""
        now_ts = NOW.timestamp()
        assert fill_forecast([(now_ts - 100, 500), (now_ts, 400)], 1000, NOW) is None
        assert fill_forecast([(now_ts, 400)], 1000, NOW) is None
        old = (NOW - timedelta(days=30)).timestamp()
        assert fill_forecast([(old, 1), (old + 10, 2)], 1000, NOW) is None
        assert daily_rate([(now_ts, 1)], NOW) is None
