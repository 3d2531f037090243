"""The quota of a ZIA tenant as threatshare last knew it, in Redis (docs/design.md#capacity): the
latest reading (after the last run's own changes; status shows it), hourly readings for the fill
forecast of the warning e-mail (a few days, so memory stays flat), and the warning's
hysteresis (armed, crossings).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import redis

from threatshare import keys
from threatshare.capacity import FORECAST_SPAN, WarningState
from threatshare.timestamps import to_iso

#: One quota reading an hour is enough for a forecast over days.
HISTORY_EVERY = timedelta(hours=1)
HISTORY_KEEP = FORECAST_SPAN + timedelta(days=1)


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

    def shift(self, added: int, at: datetime) -> None:
        """The category took ``added`` entries (fewer when negative) since the stored reading:
        the reading moves by as much, so status shows the quota after every change without
        reading it again. Nothing when there is no reading yet."""
        current = self.latest()
        if current is None or not added:
            return
        used = max(0, current["used"] + added)
        self.save(used, max(0, current["remaining"] - (used - current["used"])), at)

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
