"""The runtime allow list: "at or under", and the list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from threatshare.errors import LockLost
from threatshare.state.lock import try_lock
from threatshare.state.unblocked import (
    Matcher,
    UnblockList,
    covers,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unblocked", "entry", "expected"),
    [
        ("evil.example", "evil.example", True),
        ("evil.example", ".evil.example", True),
        ("evil.example", "sub.evil.example/login", True),
        ("evil.example", "evil.example:8443/x", True),
        ("evil.example", "notevil.example", False),
        ("evil.example:8080", "evil.example:8080/a", True),
        ("evil.example:8080", "evil.example/a", False),
        ("evil.example/login", "evil.example/login", True),
        ("evil.example/login", "evil.example/login/step2", True),
        ("evil.example/login", "evil.example/loginx", False),
        ("evil.example/login", "evil.example", False),
        ("2606:4700::1111", "2606:4700::1111", True),
    ],
)
def test_at_or_under(unblocked: str, entry: str, expected: bool) -> None:
    """A host covers itself and its subdomains; a port its host and port; a path the paths
    below it, at a segment boundary."""
    assert covers(unblocked, entry) is expected
    assert Matcher([unblocked])(entry) is expected


def test_the_list_keeps_who_when_and_why(redis_client: redis.Redis) -> None:
    """Entries are listed with when, why and who (cleaned); undo takes one off."""
    unblocked = UnblockList(redis_client, "urls")
    unblocked.add(["good.example"], NOW, "false positive\r\nticket 42", "alice")
    entry = unblocked.entries()[0]
    assert (entry.entry, entry.at, entry.reason, entry.who) == (
        "good.example",
        NOW,
        "false positive ticket 42",
        "alice",
    )
    assert unblocked.matcher()("www.good.example")
    assert unblocked.undo("good.example") is True
    assert unblocked.undo("good.example") is False
    assert not unblocked.matcher()


def test_a_listed_entry_is_pending_until_its_removal_is_recorded_under_the_lock(
    redis_client: redis.Redis,
) -> None:
    """Listing makes an entry pending; only the lock's holder clears it, and --undo does too."""
    unblocked = UnblockList(redis_client, "urls")
    unblocked.add(["good.example", "fine.example/p"], NOW, "fp", "alice")
    assert unblocked.pending() == ["fine.example/p", "good.example"]
    lock = try_lock(redis_client, "urls", 30.0)
    assert lock is not None
    lock.release()
    with pytest.raises(LockLost):
        unblocked.removed(lock, ["good.example"])  # a lapsed lock clears nothing
    assert unblocked.pending() == ["fine.example/p", "good.example"]
    lock = try_lock(redis_client, "urls", 30.0)
    assert lock is not None
    unblocked.removed(lock, ["good.example"])
    assert unblocked.pending() == ["fine.example/p"]
    assert unblocked.undo("fine.example/p") is True
    assert unblocked.pending() == []
    assert [e.entry for e in unblocked.entries()] == ["good.example"]
