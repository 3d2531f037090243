"""Which ZIA tenants hold staged changes not yet activated (docs/design.md#activation), kept in
Redis.

A run marks its tenant before its first change and after each one; whoever activates
(:mod:`threatshare.sync.activation`) clears the mark only for the changes made before the
activation read it, so a crash between a change and its activation leaves a durable trace.
The first mark also records since when the tenant has waited, and a permanent refusal of ZIA to
activate is kept until an activation succeeds: both are shown by ``status``
(docs/design.md#activation).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import redis

from threatshare import keys
from threatshare.timestamps import from_iso, to_iso


def _now() -> datetime:
    return datetime.now(UTC)


class ActivationMarks:
    """The "to activate" marks of every ZIA tenant (by tenant id), with a generation each."""

    def __init__(self, client: redis.Redis, now: Callable[[], datetime] = _now) -> None:
        self.redis = client
        self.now = now

    def mark_unactivated(self, tenant_id: str) -> None:
        """A change was, or is about to be, staged in the tenant: it must be activated.

        Each mark bumps a generation; an activation clears the mark only if no mark came
        after it read the generation. Runs mark before their first change (a crash still
        leaves the mark) and after each change (so a change that lands while an activation
        is under way is not cleared with it)."""
        with self.redis.pipeline() as pipe:
            pipe.incr(keys.tenant_unactivated(tenant_id))
            pipe.sadd(keys.tenants_unactivated(), tenant_id)
            pipe.set(keys.tenant_unactivated_since(tenant_id), str(to_iso(self.now())), nx=True)
            pipe.execute()

    def unactivated_generation(self, tenant_id: str) -> int | None:
        raw = self.redis.get(keys.tenant_unactivated(tenant_id))
        return None if raw is None else int(raw)

    def unactivated_tenants(self) -> list[str]:
        return sorted(v.decode() for v in self.redis.smembers(keys.tenants_unactivated()))

    def pending_since(self, tenant_id: str) -> datetime | None:
        """Since when the tenant holds changes not yet activated; None when it holds none."""
        if self.unactivated_generation(tenant_id) is None:
            return None
        raw = self.redis.get(keys.tenant_unactivated_since(tenant_id))
        return from_iso(raw.decode()) if raw else None

    def clear_unactivated(self, tenant_id: str, generation: int) -> bool:
        """Activation done for marks up to ``generation``; False when a later mark exists."""

        def clear(pipe: redis.client.Pipeline) -> bool:
            current = pipe.get(keys.tenant_unactivated(tenant_id))
            pipe.multi()
            if current is None or int(current) != generation:
                return False
            pipe.delete(keys.tenant_unactivated(tenant_id))
            pipe.delete(keys.tenant_unactivated_since(tenant_id))
            pipe.srem(keys.tenants_unactivated(), tenant_id)
            return True

        done = bool(
            self.redis.transaction(
                clear, keys.tenant_unactivated(tenant_id), value_from_callable=True
            )
        )
        self.redis.delete(keys.tenant_activation_refused(tenant_id))
        return done

    def hand_over(self, former_id: str, tenant_ids: list[str]) -> None:
        """Move the mark of ``former_id`` to each of ``tenant_ids`` (an id that changed)."""
        for tenant_id in tenant_ids:
            self.mark_unactivated(tenant_id)
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.tenant_unactivated(former_id))
            pipe.delete(keys.tenant_unactivated_since(former_id))
            pipe.srem(keys.tenants_unactivated(), former_id)
            pipe.execute()

    def record_refusal(self, tenant_id: str, code: str, message: str) -> None:
        """ZIA refused to activate the tenant for good (``activation_refused``)."""
        mapping = {"code": code, "message": message, "at": str(to_iso(self.now()))}
        self.redis.hset(keys.tenant_activation_refused(tenant_id), mapping=mapping)

    def refusal(self, tenant_id: str) -> dict[str, str] | None:
        """The last permanent refusal to activate the tenant, until an activation succeeds."""
        raw = self.redis.hgetall(keys.tenant_activation_refused(tenant_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None
