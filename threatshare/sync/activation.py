"""Activation of staged ZIA changes, once per changed tenant rather than once per run
(docs/design.md#activation).

A run marks its tenant "to activate" in Redis *before* its first change, so a crash between a
change and its activation leaves a durable trace; whoever activates next (``run --once`` at its
end, or the fleet's activation job) clears the mark only for changes made before the
activation began. At most one activation per tenant at a time across the fleet. The ZIA call
itself is :meth:`threatshare.zia.client.ZiaClient.activate`; this module decides when and for
which tenant, with the state in Redis, which is why it lives above ``zia`` and ``state``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from redis.exceptions import LockError

from threatshare import keys
from threatshare.config import ZiaTenant
from threatshare.errors import ThreatshareError
from threatshare.http import Deadline
from threatshare.runtime import Runtime
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.store import Store

log = structlog.get_logger(__name__)

ACTIVATION_LOCK_TTL = 120


@dataclass(frozen=True)
class Activation:
    zia: str  # name of the [zia.*] table
    activated: bool
    error: dict[str, str] | None = None


def tenants_by_id(tenants: Mapping[str, ZiaTenant]) -> dict[str, str]:
    """Tenant id (as stored in Redis) -> name of the first [zia.*] table with that id."""
    out: dict[str, str] = {}
    for name in sorted(tenants):
        out.setdefault(tenants[name].tenant_id, name)
    return out


def adopt_former_marks(marks: ActivationMarks, tables: Mapping[str, ZiaTenant]) -> None:
    """Marks written under a tenant's former id (its API host) belong to every organisation
    behind that host: each is marked, so nothing staged before an upgrade stays unactivated."""
    current = {table.tenant_id for table in tables.values()}
    for former in set(marks.unactivated_tenants()) - current:
        heirs = [t.tenant_id for t in tables.values() if t.api_host_id == former]
        if heirs:
            marks.hand_over(former, heirs)


def activate_tenant(rt: Runtime, name: str, deadline: Deadline | None = None) -> Activation:
    """Activate ``name``'s staged changes if any are marked; a no-op otherwise."""
    marks = ActivationMarks(rt.redis, rt.now)
    tenant_id = rt.config.zia[name].tenant_id
    marked = marks.unactivated_generation(tenant_id)
    if marked is None:
        return Activation(name, activated=False)
    lock = rt.redis.lock(
        keys.tenant_activation_lock(tenant_id),
        timeout=ACTIVATION_LOCK_TTL,
        blocking=False,
        thread_local=False,
    )
    if not lock.acquire():
        return Activation(name, activated=False)  # another worker is activating it now
    deadline = deadline or Deadline.after(rt.config.settings.run_deadline.total_seconds())
    client = rt.zia_client(name, deadline)
    try:
        # Read again under the lock: the activation covers the changes marked up to now.
        marked = marks.unactivated_generation(tenant_id)
        if marked is None:
            return Activation(name, activated=False)
        client.activate()
        marks.clear_unactivated(tenant_id, marked)
        Store(rt.redis).record_activation(tenant_id, rt.now())
        log.info("zia.activated", zia=name)
        return Activation(name, activated=True)
    except ThreatshareError as exc:
        log.warning("zia.activation_failed", zia=name, code=exc.code, error=exc.message)
        if exc.code == "activation_refused":  # kept for status until one succeeds
            marks.record_refusal(tenant_id, exc.code, exc.message)
        return Activation(name, activated=False, error=exc.as_dict())
    finally:
        client.close()
        with contextlib.suppress(LockError):  # expired under us: nothing to release
            lock.release()


def activate_pending(rt: Runtime) -> list[Activation]:
    """Activate every tenant of this configuration that has marked, unactivated changes."""
    marks = ActivationMarks(rt.redis, rt.now)
    adopt_former_marks(marks, rt.config.zia)
    known = tenants_by_id(rt.config.zia)
    return [
        activate_tenant(rt, known[tenant_id])
        for tenant_id in marks.unactivated_tenants()
        if tenant_id in known
    ]
