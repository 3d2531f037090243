"""Tenant activation marks in a real Redis: a clear never swallows a later mark; since when a
tenant waits, and ZIA's refusal, until an activation succeeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from threatshare.state.activation_marks import ActivationMarks
from threatshare.timestamps import to_iso


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

    def test_pending_since_is_the_first_mark_until_cleared(self, redis_client: redis.Redis) -> None:
        """The first mark records since when the tenant waits; later marks keep it; a clear
        forgets it, and the next mark starts a new wait."""
        clock = [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)]
        marks = ActivationMarks(redis_client, lambda: clock[0])
        assert marks.pending_since("t") is None
        marks.mark_unactivated("t")
        clock[0] += timedelta(minutes=20)
        marks.mark_unactivated("t")
        assert marks.pending_since("t") == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        generation = marks.unactivated_generation("t")
        assert generation is not None and marks.clear_unactivated("t", generation)
        assert marks.pending_since("t") is None
        marks.mark_unactivated("t")
        assert marks.pending_since("t") == clock[0]

    def test_a_refusal_stands_until_an_activation_succeeds(self, redis_client: redis.Redis) -> None:
        """A recorded refusal is read back with its time, and cleared by a successful clear."""
        at = datetime(2026, 1, 1, tzinfo=UTC)
        marks = ActivationMarks(redis_client, lambda: at)
        marks.mark_unactivated("t")
        marks.record_refusal("t", "activation_refused", "HTTP 403")
        refusal = marks.refusal("t")
        assert refusal == {"code": "activation_refused", "message": "HTTP 403", "at": to_iso(at)}
        generation = marks.unactivated_generation("t")
        assert generation is not None
        marks.clear_unactivated("t", generation)
        assert marks.refusal("t") is None

    def test_a_former_id_hands_its_mark_to_each_heir(self, redis_client: redis.Redis) -> None:
        """A mark under a former tenant id becomes a mark of every heir, and the former goes."""
        marks = ActivationMarks(redis_client)
        marks.mark_unactivated("old")
        marks.hand_over("old", ["a", "b"])
        assert marks.unactivated_tenants() == ["a", "b"]
        assert marks.unactivated_generation("old") is None
