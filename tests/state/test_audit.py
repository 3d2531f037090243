"""The audit trail: one item per changed entry, bounded by age and by length, read back with
filters (docs/design.md#provenance-and-audit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from threatshare.state.audit import AuditTrail

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_append_and_read_back_with_filters(redis_client: redis.Redis) -> None:
    """Items come back oldest first, with who and why of an unblock, filtered as asked."""
    trail = AuditTrail(redis_client, timedelta(days=90))
    trail.append("urls", "added", ["a.example", "b.example"], at=T0, run_id="r1")
    trail.append(
        "urls",
        "unblocked",
        ["a.example"],
        at=T0 + timedelta(hours=1),
        run_id="u1",
        who="alice",
        reason="false positive",
    )
    trail.append("doms", "expired", [".x.example"], at=T0 + timedelta(hours=2), run_id="r2")
    lines = list(trail.read())
    assert [(x.instance, x.entry, x.action) for x in lines] == [
        ("urls", "a.example", "added"),
        ("urls", "b.example", "added"),
        ("urls", "a.example", "unblocked"),
        ("doms", ".x.example", "expired"),
    ]
    assert lines[2].who == "alice" and lines[2].reason == "false positive"
    assert lines[0].who is None and lines[0].at == T0
    assert [x.action for x in trail.read(entry="a.example")] == ["added", "unblocked"]
    assert [x.entry for x in trail.read(instance="doms")] == [".x.example"]
    since = [x.action for x in trail.read(since=T0 + timedelta(minutes=30))]
    assert since == ["unblocked", "expired"]


def test_items_older_than_retention_are_trimmed(redis_client: redis.Redis) -> None:
    """A year of appends keeps only the retention's worth (the clock is the product's)."""
    trail = AuditTrail(redis_client, timedelta(days=90))
    for day in range(365):
        entries = [f"d{day}-{i}.example" for i in range(200)]
        trail.append("urls", "added", entries, at=T0 + timedelta(days=day), run_id="r")
    oldest = next(trail.read()).at
    assert oldest >= T0 + timedelta(days=364 - 91)
    assert trail.length() <= 92 * 200 + 200  # approximate trimming keeps at most a node more


def test_a_writer_with_a_slow_clock_never_fails(redis_client: redis.Redis) -> None:
    """An append stamped before the newest item still lands, after it."""
    trail = AuditTrail(redis_client, timedelta(days=90))
    trail.append("urls", "added", ["a.example"], at=T0 + timedelta(minutes=5), run_id="fast")
    trail.append("urls", "added", ["b.example"], at=T0, run_id="slow")
    assert [x.entry for x in trail.read()] == ["a.example", "b.example"]


def test_unknown_actions_are_refused(redis_client: redis.Redis) -> None:
    """Only the actions of the trail's vocabulary can be written."""
    trail = AuditTrail(redis_client, timedelta(days=90))
    with pytest.raises(ValueError, match="unknown audit action"):
        trail.append("urls", "deleted", ["a.example"], at=T0, run_id="r")  # type: ignore[arg-type]
