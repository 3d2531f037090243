"""Which ZIA tenants hold staged changes not yet activated (docs/design.md#activation), kept in
Redis.

A run marks its tenant before its first change and after each one; whoever activates
(:mod:`threatshare.sync.activation`) clears the mark only for the changes made before the
activation read it, so a crash between a change and its activation leaves a durable trace.
"""

from __future__ import annotations

import redis

from threatshare import keys


class ActivationMarks:
    """The "to activate" marks of every ZIA tenant, with a generation each."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def mark_unactivated(self, tenant: str) -> None:
        """A change was, or is about to be, staged in the tenant: it must be activated.

        Each mark bumps a generation; an activation clears the mark only if no mark came
        after it read the generation. Runs mark before their first change (a crash still
        leaves the mark) and after each change (so a change that lands while an activation
        is under way is not cleared with it)."""
        with self.redis.pipeline() as pipe:
            pipe.incr(keys.tenant_unactivated(tenant))
            pipe.sadd(keys.tenants_unactivated(), tenant)
            pipe.execute()

    def unactivated_generation(self, tenant: str) -> int | None:
        raw = self.redis.get(keys.tenant_unactivated(tenant))
        return None if raw is None else int(raw)

    def unactivated_tenants(self) -> list[str]:
        return sorted(v.decode() for v in self.redis.smembers(keys.tenants_unactivated()))

    def clear_unactivated(self, tenant: str, generation: int) -> bool:
        """Activation done for marks up to ``generation``; False when a later mark exists."""

        def clear(pipe: redis.client.Pipeline) -> bool:
            current = pipe.get(keys.tenant_unactivated(tenant))
            pipe.multi()
            if current is None or int(current) != generation:
                return False
            pipe.delete(keys.tenant_unactivated(tenant))
            pipe.srem(keys.tenants_unactivated(), tenant)
            return True

        return bool(
            self.redis.transaction(clear, keys.tenant_unactivated(tenant), value_from_callable=True)
        )
