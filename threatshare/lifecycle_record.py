"""The lifecycle record of an instance and the quota record of a tenant, in Redis (S13).

Per instance, one small hash: the totals of entries expired, evicted, removed by hand and
adopted; what the last reconciliation found (``foreign`` entries, and when it was); the start of
an "at capacity" incident; and whether the category was already looked up by name.

Per tenant: hourly readings of the quota (for the fill forecast of the warning e-mail, a few
weeks, so memory stays flat), the latest reading (shown in status), and the warning's
hysteresis (armed, crossings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis

from threatshare import keys
from threatshare.capacity import FORECAST_SPAN, WarningState
from threatshare.timestamps import from_iso, to_iso

TOTALS = ("expired", "evicted", "removed_by_hand", "adopted", "unblocked_removed")
#: One quota reading an hour is enough for a forecast over days.
HISTORY_EVERY = timedelta(hours=1)
HISTORY_KEEP = FORECAST_SPAN + timedelta(days=1)


@dataclass(frozen=True)
class LifecycleState:
    totals: dict[str, int]
    foreign: int
    last_reconciled: datetime | None
    capacity_since: datetime | None
    looked_up: bool


class LifecycleRecord:
    """The lifecycle hash of one instance."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.redis = client
        self.key = keys.instance_lifecycle(name)

    def load(self) -> LifecycleState:
        raw = {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key).items()}
        return LifecycleState(
            totals={t: int(raw.get(t, 0)) for t in TOTALS},
            foreign=int(raw.get("foreign", 0)),
            last_reconciled=from_iso(raw.get("last_reconciled")),
            capacity_since=from_iso(raw.get("capacity_since")),
            looked_up=raw.get("looked_up") == "1",
        )

    def add(self, **counts: int) -> None:
        """Add to the totals (``expired=3``...)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name, count in counts.items():
                if name not in TOTALS:
                    raise ValueError(f"unknown lifecycle total {name!r}")
                if count:
                    pipe.hincrby(self.key, name, count)
            pipe.execute()

    def reconciled(self, at: datetime, foreign: int) -> None:
        self.redis.hset(self.key, mapping={"last_reconciled": to_iso(at) or "", "foreign": foreign})

    def looked_up(self) -> None:
        """The category was looked up by name once (found, created, or not creatable yet)."""
        self.redis.hset(self.key, "looked_up", "1")

    def forget_category(self) -> None:
        """The category is gone: the next run looks it up (or creates it) again."""
        self.redis.hdel(self.key, "looked_up", "last_reconciled")

    def start_capacity_incident(self, at: datetime) -> datetime:
        """The start of the current "at capacity" incident (``at`` if none was open)."""
        self.redis.hsetnx(self.key, "capacity_since", to_iso(at) or "")
        since = from_iso(self.redis.hget(self.key, "capacity_since"))
        return since or at

    def end_capacity_incident(self) -> None:
        self.redis.hdel(self.key, "capacity_since")


class QuotaRecord:
    """The quota readings and warning state of one ZIA tenant (by tenant id)."""

    def __init__(self, client: redis.Redis, tenant_id: str) -> None:
        self.redis = client
        self.tenant_id = tenant_id

    def save(self, used: int, remaining: int, at: datetime) -> None:
        """The reading after a run's own changes (status shows it) and, hourly, its history."""
        history = keys.tenant_quota_history(self.tenant_id)
        stamp = at.timestamp()
        latest = self.redis.zrange(history, -1, -1, withscores=True)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                keys.tenant_quota(self.tenant_id),
                mapping={"used": used, "remaining": remaining, "at": to_iso(at) or ""},
            )
            if not latest or stamp - float(latest[0][1]) >= HISTORY_EVERY.total_seconds():
                pipe.zadd(history, {f"{int(stamp)}:{used}": stamp})
            pipe.zremrangebyscore(history, "-inf", f"({stamp - HISTORY_KEEP.total_seconds()}")
            pipe.execute()

    def latest(self) -> dict[str, Any] | None:
        raw = {
            k.decode(): v.decode()
            for k, v in self.redis.hgetall(keys.tenant_quota(self.tenant_id)).items()
        }
        if not raw:
            return None
        return {"used": int(raw["used"]), "remaining": int(raw["remaining"]), "at": raw["at"]}

    def adjust(self, freed: int, at: datetime) -> None:
        """A run removed ``freed`` entries without reading the quota: the stored reading is
        moved by as much, so status shows the quota after the run's own changes."""
        current = self.latest()
        if current is None or not freed:
            return
        used = max(0, current["used"] - freed)
        self.save(used, current["remaining"] + (current["used"] - used), at)

    def history(self) -> list[tuple[float, int]]:
        raw = self.redis.zrange(keys.tenant_quota_history(self.tenant_id), 0, -1)
        out = []
        for member in raw:
            at, _, used = member.decode().partition(":")
            out.append((float(at), int(used)))
        return out

    def warning_state(self) -> WarningState:
        raw = self.redis.hgetall(keys.tenant_quota_warning(self.tenant_id))
        if not raw:
            return WarningState()
        return WarningState(
            armed=raw.get(b"armed", b"1") == b"1", crossings=int(raw.get(b"crossings", 0))
        )

    def set_warning_state(self, state: WarningState) -> None:
        self.redis.hset(
            keys.tenant_quota_warning(self.tenant_id),
            mapping={"armed": "1" if state.armed else "0", "crossings": state.crossings},
        )
