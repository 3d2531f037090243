"""Instance state in a real Redis (S5): the run lock's lease, fenced bookmark, activation marks."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis

from threatshare import keys
from threatshare.store import Store


class TestRunLock:
    def test_one_run_at_a_time(self, redis_client: redis.Redis) -> None:
        """A second lock on a held instance is refused until the first is released."""
        store = Store(redis_client)
        first = store.try_lock("a", 5)
        assert first is not None
        assert store.try_lock("a", 5) is None
        first.release()
        assert store.try_lock("a", 5) is not None

    def test_kept_alive_outlives_its_lease_and_lapses_after(
        self, redis_client: redis.Redis
    ) -> None:
        """While kept alive a short lease outlives itself several times; after, it lapses."""
        lock = Store(redis_client).try_lock("kept", 0.3)
        assert lock is not None
        with lock.kept_alive():
            time.sleep(1.0)
            assert redis_client.get(keys.instance_lock("kept")) == lock.token.encode()
        time.sleep(0.45)
        assert redis_client.get(keys.instance_lock("kept")) is None

    def test_kept_alive_never_renews_a_lock_that_changed_hands(
        self, redis_client: redis.Redis
    ) -> None:
        """Once the lease lapsed and another run took the lock, it is not renewed for us."""
        lock = Store(redis_client).try_lock("moved", 0.3)
        assert lock is not None
        with lock.kept_alive():
            redis_client.set(keys.instance_lock("moved"), "theirs", px=300)
            time.sleep(0.6)
            assert redis_client.get(keys.instance_lock("moved")) is None

    def test_bookmark_write_is_fenced_by_the_lock(self, redis_client: redis.Redis) -> None:
        """A run whose lock expired cannot move the bookmark."""
        store = Store(redis_client)
        lock = store.try_lock("f", 5)
        assert lock is not None
        now = datetime.now(UTC)
        redis_client.set(keys.instance_lock("f"), "someone-else")
        assert not store.finish_ok("f", lock, now, now, "fp")
        assert store.load("f").bookmark is None
        redis_client.set(keys.instance_lock("f"), lock.token)
        assert store.finish_ok("f", lock, now, now, "fp")
        assert store.load("f").bookmark == now.replace(microsecond=now.microsecond)


class TestActivationMarks:
    def test_a_mark_after_the_read_survives_the_clear(self, redis_client: redis.Redis) -> None:
        """An activation clears only the marks it saw; a change marked meanwhile stays marked."""
        store = Store(redis_client)
        store.mark_unactivated("t")
        seen = store.unactivated_generation("t")
        assert seen is not None
        store.mark_unactivated("t")  # a push lands while the activation is under way
        assert not store.clear_unactivated("t", seen)
        assert store.unactivated_tenants() == ["t"]
        latest = store.unactivated_generation("t")
        assert latest is not None and store.clear_unactivated("t", latest)
        assert store.unactivated_tenants() == []
