"""ISO 8601 timestamps with a ``Z``, written and read in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from threatshare.timestamps import from_iso, to_iso


def test_round_trip_in_utc_with_a_z() -> None:
    """Any aware time is written in UTC with a Z and reads back as the same instant."""
    moment = datetime(2026, 3, 1, 12, 30, 5, 123000, tzinfo=timezone(timedelta(hours=2)))
    text = to_iso(moment)
    assert text == "2026-03-01T10:30:05.123000Z"
    assert from_iso(text) == moment
    assert from_iso(text.encode()) == moment.astimezone(UTC)


def test_nothing_stays_nothing() -> None:
    """None and the empty string read as None; None writes as None."""
    assert to_iso(None) is None
    assert from_iso(None) is None and from_iso("") is None and from_iso(b"") is None
