"""Mimecast's clock: offsets read from Date headers, their freshness, and the skew warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from structlog.testing import capture_logs

from threatshare.mimecast_clock import MAX_AGE, MimecastClock, parse_date_header

T0 = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)


class Clocks:
    """The product's clock and a monotonic one, both driven by the test."""

    def __init__(self) -> None:
        self.local = T0
        self.mono = 1000.0

    def pass_time(self, seconds: float) -> None:
        self.local += timedelta(seconds=seconds)
        self.mono += seconds

    def clock(self) -> MimecastClock:
        return MimecastClock(lambda: self.local, lambda: self.mono)


def header(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def test_now_is_the_product_clock_plus_the_offset_read() -> None:
    """A Date ten minutes behind the product's clock makes now ten minutes earlier, for that
    account, for the bound account, and for an unbound caller; before any reading, now is the
    product's own clock."""
    clocks = Clocks()
    clock = clocks.clock()
    assert clock.now("main") == T0
    clock.observe("main", header(T0 - timedelta(minutes=10)))
    assert clock.now("main") == T0 - timedelta(minutes=10)
    with clock.bound("main"):
        assert clock() == T0 - timedelta(minutes=10)
    assert clock() == T0 - timedelta(minutes=10)  # the latest reading of any account
    reading = clock.reading("main")
    assert reading is not None and reading.skew_seconds == 600


def test_the_estimate_takes_the_middle_of_the_second_and_of_the_exchange() -> None:
    """A header of whole seconds on an answer that took 4 s reads as the middle of its second
    at the middle of the exchange: an offset within a second of the truth."""
    clocks = Clocks()
    clock = clocks.clock()
    # Mimecast's clock is 30.3 s ahead; the answer was stamped 2 s before it arrived.
    stamped = T0 - timedelta(seconds=2) + timedelta(seconds=30.3)
    clock.observe("main", header(stamped.replace(microsecond=0)), latency=4.0)
    offset = (clock.now("main") - T0).total_seconds()
    assert abs(offset - 30.3) <= 1.0


def test_unreadable_or_missing_dates_change_nothing() -> None:
    """A missing, garbled or zone-less Date leaves the clock as it was."""
    clocks = Clocks()
    clock = clocks.clock()
    for value in (None, "", "yesterday", "Sun, 06 Dec 2026 09:00:00"):
        clock.observe("main", value)
    assert clock.reading("main") is None and clock.now("main") == T0
    assert parse_date_header("Sun, 06 Dec 2026 09:00:00 GMT") == T0


def test_a_reading_is_fresh_until_it_ages_or_the_product_clock_jumps() -> None:
    """A reading decides windows while it is younger than MAX_AGE and the product's clock
    moved as the monotonic one did; a jump of the product's clock (it was set) makes it stale."""
    clocks = Clocks()
    clock = clocks.clock()
    assert not clock.fresh("main")
    clock.observe("main", header(T0))
    assert clock.fresh("main") and not clock.fresh("other")
    clocks.pass_time(MAX_AGE - 1)
    assert clock.fresh("main")
    clocks.pass_time(2)
    assert not clock.fresh("main")
    clock.observe("main", header(clocks.local))
    clocks.local += timedelta(hours=1)  # the worker's clock was set an hour on
    assert not clock.fresh("main")


def test_a_skew_over_a_minute_is_logged_once_per_incident() -> None:
    """A skew over 60 s is logged once however many answers show it, not at all within a
    minute, and again after the clocks agreed in between."""
    clocks = Clocks()
    clock = clocks.clock()
    with capture_logs() as logs:
        for _ in range(3):
            clock.observe("main", header(T0 - timedelta(hours=1)))
        clock.observe("main", header(T0 - timedelta(seconds=30)))
        clock.observe("main", header(T0 + timedelta(hours=2)))
    warnings = [e for e in logs if e["event"] == "clock.skew"]
    assert [w["skew_seconds"] for w in warnings] == [3600, -7200]
    assert all(w["mimecast"] == "main" for w in warnings)
