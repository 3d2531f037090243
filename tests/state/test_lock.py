"""The run lock in a real Redis (docs/design.md#the-fleet): one run at a time, a lease kept alive,
then lapsing."""

from __future__ import annotations

import time

import redis

from threatshare import keys
from threatshare.state.lock import try_lock


class TestRunLock:
    def test_one_run_at_a_time(self, redis_client: redis.Redis) -> None:
        """A second lock on a held instance is refused until the first is released."""
        first = try_lock(redis_client, "a", 5)
        assert first is not None
        assert try_lock(redis_client, "a", 5) is None
        first.release()
        assert try_lock(redis_client, "a", 5) is not None

    def test_kept_alive_outlives_its_lease_and_lapses_after(
        self, redis_client: redis.Redis
    ) -> None:
        """While kept alive a short lease outlives itself several times; after, it lapses."""
        lock = try_lock(redis_client, "kept", 0.3)
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
        lock = try_lock(redis_client, "moved", 0.3)
        assert lock is not None
        with lock.kept_alive():
            redis_client.set(keys.instance_lock("moved"), "theirs", px=300)
            time.sleep(0.6)
            assert redis_client.get(keys.instance_lock("moved")) is None
