"""Tenant activation marks in a real Redis (docs/design.md#activation): a clear never swallows a
later mark."""

from __future__ import annotations

import redis

from threatshare.state.activation_marks import ActivationMarks


class TestActivationMarks:
    def test_a_mark_after_the_read_survives_the_clear(self, redis_client: redis.Redis) -> None:
        """An activation clears only the marks it saw; a change marked meanwhile stays marked."""
        store = ActivationMarks(redis_client)
        store.mark_unactivated("t")
        seen = store.unactivated_generation("t")
        assert seen is not None
        store.mark_unactivated("t")  # a push lands while the activation is under way
        assert not store.clear_unactivated("t", seen)
        assert store.unactivated_tenants() == ["t"]
        latest = store.unactivated_generation("t")
        assert latest is not None and store.clear_unactivated("t", latest)
        assert store.unactivated_tenants() == []
