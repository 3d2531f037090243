"""The lifecycle record of an instance, in Redis (docs/design.md#expiry): one small hash with the
totals of entries expired, evicted, removed by hand and adopted; what the last reconciliation found
(``foreign`` entries, and when it was); the start of an "at capacity" incident; and whether the
category was already looked up by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis

from threatshare import keys
from threatshare.timestamps import from_iso, to_iso

TOTALS = ("expired", "evicted", "removed_by_hand", "adopted", "unblocked_removed")


@dataclass(frozen=True)
class LifecycleState:
    totals: dict[str, int]
    foreign: int
    last_reconciled: datetime | None
    capacity_since: datetime | None
    looked_up: bool
    #: The instance, no longer configured, whose category this one adopted (a rename), and when.
    renamed_from: str | None = None
    renamed_at: datetime | None = None


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
            renamed_from=raw.get("renamed_from") or None,
            renamed_at=from_iso(raw.get("renamed_at")),
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

    def renamed(self, previous: str, at: datetime) -> None:
        """The category of ``previous``, an instance no longer configured, is this one's now."""
        self.redis.hset(
            self.key, mapping={"renamed_from": previous, "renamed_at": to_iso(at) or ""}
        )

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
