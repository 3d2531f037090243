"""Instance state in a real Redis (docs/design.md#state-in-redis): the bookmark moves only under the
run's lock."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from threatshare import keys
from threatshare.state.lock import try_lock
from threatshare.state.store import Store


class TestFencedFinish:
    def test_bookmark_write_is_fenced_by_the_lock(self, redis_client: redis.Redis) -> None:
        """A run whose lock expired cannot move the bookmark."""
        store = Store(redis_client)
        lock = try_lock(redis_client, "f", 5)
        assert lock is not None
        now = datetime.now(UTC)
        redis_client.set(keys.instance_lock("f"), "someone-else")
        assert not store.finish_ok("f", lock, now, now, "fp")
        assert store.load("f").bookmark is None
        redis_client.set(keys.instance_lock("f"), lock.token)
        assert store.finish_ok("f", lock, now, now, "fp")
        assert store.load("f").bookmark == now.replace(microsecond=now.microsecond)
