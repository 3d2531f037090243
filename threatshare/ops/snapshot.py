"""One reading of the whole fleet's state, from which ``/metrics`` and the status page render.

The instance records are :func:`threatshare.ops.status.collect`'s, the very document of
``status --json`` and ``/api/status``, so every view agrees with ``status`` by construction.
Beside them: each ZIA tenant's totals, the alert outbox's depth and the workers RQ has seen.
When Redis cannot be read the snapshot says so instead (and holds no data): the endpoint keeps
answering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.errors import StoreUnavailable
from threatshare.ops import status
from threatshare.ops.stats import tenant_stats
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.store import Store
from threatshare.timestamps import from_iso, to_iso

#: Counts the fleet's workers that RQ knows of; given by the caller (RQ is the fleet's business).
WorkerCount = Callable[[redis.Redis], int]


@dataclass(frozen=True)
class TenantView:
    """One ``[zia.*]`` table: its quota as the status records show it, and its totals."""

    name: str
    quota: dict[str, Any] | None
    activations: int = 0
    rate_limited: int = 0
    last_activation: str | None = None
    #: Since when changes of the tenant wait for activation (None: none wait).
    pending_activation_since: str | None = None
    #: ZIA's last permanent refusal to activate ({code, message, at}), until one succeeds.
    activation_refused: dict[str, str] | None = None


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    instances: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[TenantView] = field(default_factory=list)
    outbox: int = 0
    workers: int | None = None
    #: Why Redis could not be read; None when it could.
    error: str | None = None

    @property
    def redis_up(self) -> bool:
        return self.error is None


def age_seconds(iso: str | None, at: datetime) -> float | None:
    """Seconds from the ISO time ``iso`` to ``at`` (never negative); None without a time."""
    when = from_iso(iso)
    return None if when is None else max(0.0, (at - when).total_seconds())


def _tenants(
    config: Config, client: redis.Redis, records: list[dict[str, Any]]
) -> list[TenantView]:
    quotas: dict[str, dict[str, Any] | None] = {}
    for record in records:
        quotas.setdefault(record["zia"], record["quota"])
    store = Store(client)
    marks = ActivationMarks(client)
    views = []
    for name in sorted(config.zia):
        tenant = config.zia[name]
        quota = quotas[name] if name in quotas else status.quota_status(store, tenant)
        views.append(
            TenantView(
                name,
                quota,
                **tenant_stats(client, tenant.tenant_id),
                pending_activation_since=to_iso(marks.pending_since(tenant.tenant_id)),
                activation_refused=marks.refusal(tenant.tenant_id),
            )
        )
    return views


def take(
    config: Config,
    client: redis.Redis,
    now: Callable[[], datetime],
    workers: WorkerCount | None = None,
) -> Snapshot:
    """The fleet as Redis has it now, or a snapshot that names why Redis could not be read
    (the exception's type only: its text may carry the Redis URL)."""
    at = now()
    try:
        records = status.collect(config, Store(client))
        return Snapshot(
            at,
            records,
            _tenants(config, client, records),
            Outbox(client).pending(),
            workers(client) if workers else None,
        )
    except (redis.RedisError, StoreUnavailable, OSError) as exc:
        return Snapshot(at, error=f"Redis cannot be reached ({type(exc).__name__})")
