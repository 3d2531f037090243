"""The ledger of entries in a real Redis: sightings, what is due, least recently seen,
tombstones of hand removals, staging, and the move from the earlier hash record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from threatshare import keys
from threatshare.state.ledger import STAGING_TTL, TOMBSTONE_KEEP, Ledger
from threatshare.state.lock import try_lock

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T = NOW.timestamp()


def test_last_seen_is_the_record_time_and_only_moves_forward(redis_client: redis.Redis) -> None:
    """A pushed entry's last sighting is its record's time; an older record never makes it
    look older, a newer one restarts its clock; the first sighting stays."""
    ledger = Ledger(redis_client)
    ledger.record_pushed("urls", {"a.example": T - 100})
    ledger.record_met("urls", "staging", {"a.example": T - 500})
    assert ledger.last_seen("urls", ["a.example", "b.example"]) == [T - 100, None]
    ledger.record_met("urls", "staging", {"a.example": T})
    assert ledger.last_seen("urls", ["a.example"]) == [T]
    assert (
        redis_client.hget(keys.instance_first_seen("urls"), "a.example")
        == str(int(T - 100)).encode()
    )


def test_due_and_least_recent_without_reading_everything(redis_client: redis.Redis) -> None:
    """Entries last seen before a cutoff are due, oldest first and at most the limit asked;
    the least recently seen come out in order."""
    ledger = Ledger(redis_client)
    ledger.record_pushed("urls", {f"e{i}.example": T - i * 86_400 for i in range(10)})
    cutoff = NOW - timedelta(days=6, hours=12)
    assert ledger.due_count("urls", cutoff) == 3
    assert ledger.due("urls", cutoff, 2) == ["e9.example", "e8.example"]
    assert [e for e, _ in ledger.oldest("urls", 3)] == ["e9.example", "e8.example", "e7.example"]
    assert ledger.oldest_last_seen("urls") == T - 9 * 86_400
    assert ledger.entry_count("urls") == 10


def test_tombstones_bury_older_records_only_and_are_trimmed(redis_client: redis.Redis) -> None:
    """An entry removed by hand leaves the record; a record older than the removal is buried,
    a newer one is not; pushing it again lifts the tombstone; old tombstones are dropped."""
    ledger = Ledger(redis_client)
    ledger.record_pushed("urls", {"gone.example": T - 1000, "kept.example": T - 1000})
    lock = try_lock(redis_client, "urls", 30.0)
    assert lock is not None
    ledger.tombstone("urls", lock, ["gone.example"], NOW)
    assert set(ledger.scan("urls")) == {"kept.example"}
    met = {"gone.example": T - 10, "kept.example": T - 10}
    assert ledger.record_met("urls", "staging", met, write=False) == "bk"
    assert ledger.record_met("urls", "staging", {"gone.example": T + 10}, write=False) == "f"
    ledger.record_pushed("urls", {"gone.example": T + 10})
    assert ledger.redis.zcard(keys.instance_tombstones("urls")) == 0
    ledger.tombstone("urls", lock, ["old.example"], NOW - TOMBSTONE_KEEP - timedelta(days=1))
    ledger.tombstone("urls", lock, ["new.example"], NOW)
    assert ledger.redis.zcard(keys.instance_tombstones("urls")) == 1


def test_staging_newest_first_with_record_times(redis_client: redis.Redis) -> None:
    """Staged entries come out newest first with their record times; the oldest can be
    unstaged; restaging the category's entries keeps their last sighting."""
    ledger = Ledger(redis_client)
    staging = ledger.staging("urls", "run-1")
    ledger.stage(staging, {"old.example": 1.0, "new.example": 3.0, "mid.example": 2.0})
    chunks = list(ledger.staged_newest_first(staging, 2))
    assert chunks == [{"new.example": 3.0, "mid.example": 2.0}, {"old.example": 1.0}]
    assert ledger.staged_oldest(staging, 1) == [("old.example", 1.0)]
    ledger.unstage(staging, ["old.example"])
    ledger.clear_staged(staging)
    ledger.record_pushed("urls", {"a.example": 5.0, "b.example": 6.0})
    lock = try_lock(redis_client, "urls", 30.0)
    assert lock is not None
    assert ledger.restage_all("urls", staging, lock) == 2
    assert ledger.entry_count("urls") == 0
    assert list(ledger.staged_newest_first(staging)) == [{"b.example": 6.0, "a.example": 5.0}]


def test_adopted_entries_age_from_adoption(redis_client: redis.Redis) -> None:
    """Adopted entries are recorded as seen at adoption; known ones keep their sighting."""
    ledger = Ledger(redis_client)
    ledger.record_pushed("urls", {"mine.example": T - 50})
    ledger.adopt("urls", ["found.example", "mine.example"], NOW)
    assert ledger.last_seen("urls", ["found.example", "mine.example"]) == [T, T - 50]


def test_the_earlier_hash_record_is_migrated(redis_client: redis.Redis) -> None:
    """A record kept by an earlier version moves into the sorted record once."""
    redis_client.hset(keys.instance_entries("urls"), mapping={"a.example": "100 200"})
    ledger = Ledger(redis_client)
    assert ledger.migrate("urls") == 1
    assert ledger.last_seen("urls", ["a.example"]) == [200.0]
    assert ledger.migrate("urls") == 0
    assert not redis_client.exists(keys.instance_entries("urls"))


def test_what_a_pull_met_is_deduped_and_written_in_chunks(redis_client: redis.Redis) -> None:
    """Entries the category holds get their sighting, new ones are staged with their newest
    time, in order and across chunks; a dry run reads the same answer and writes nothing."""
    ledger = Ledger(redis_client)
    ledger.record_pushed("urls", {"held.example": T - 100})
    met = {f"new{i}.example/p": T - i for i in range(2500)} | {"held.example": T}
    staging = ledger.staging("urls", "run-1")
    assert ledger.record_met("urls", staging, met, write=False) == "f" * 2500 + "k"
    assert ledger.staged_count(staging) == 0
    assert ledger.last_seen("urls", ["held.example"]) == [T - 100]
    assert ledger.record_met("urls", staging, met) == "f" * 2500 + "k"
    assert ledger.staged_count(staging) == 2500
    assert ledger.last_seen("urls", ["held.example"]) == [T]
    assert 0 < redis_client.ttl(staging) <= STAGING_TTL
    ledger.record_met("urls", staging, {"new7.example/p": T - 5000})  # older: kept newer
    assert redis_client.zscore(staging, "new7.example/p") == T - 7


def test_an_entry_with_a_line_break_is_refused_not_misread(redis_client: redis.Redis) -> None:
    """An entry that would break the script's lines, or an empty one, raises before anything
    is written."""
    ledger = Ledger(redis_client)
    staging = ledger.staging("urls", "run-1")
    with pytest.raises(ValueError, match="line break"):
        ledger.record_met("urls", staging, {"a.example/x\n1 b.example": T, "c.example": T})
    with pytest.raises(ValueError, match="empty"):
        ledger.record_met("urls", staging, {"": T, "c.example": T})
    # Past the first chunk too: the chunks before it are not sent either.
    many = {f"n{n}.example": T for n in range(2_500)}
    with pytest.raises(ValueError, match="line break"):
        ledger.record_met("urls", staging, {**many, "a.example/x\n1 b.example": T})
    assert ledger.staged_count(staging) == 0
