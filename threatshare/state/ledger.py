"""The ledger of one instance: what its category holds, and what the current window stages.

The entries pushed to the category live in one hash per instance (entry -> "<first seen> <last
seen>", epoch seconds): the dedupe of S2 reads it, and the lifecycle (expiry, capacity,
reconciliation, S13) builds on it. The entries of the window being worked on wait in a sorted
set scored by record time, so a run never holds a window in memory and can push newest first.
That *staging* key is the run's own (:meth:`Ledger.staging`): two runs of one instance never
clear each other's, and a crashed run's staging expires by itself.

Writes that forget entries are fenced by the run's lock (:mod:`threatshare.state.fenced`): a
run whose lock lapsed cannot undo what its successor recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import redis

from threatshare import keys
from threatshare.state.fenced import FencedWriter
from threatshare.state.lock import RunLock

#: How long a run's staging outlives its last write: beyond any run's deadline (at most 1 h).
STAGING_TTL = 2 * 3600


class Ledger:
    """The per-instance record of entries, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._fenced = FencedWriter(client)

    @staticmethod
    def staging(name: str, run_id: str) -> str:
        """The staging key of one run of instance ``name``."""
        return keys.run_staging(name, run_id)

    def entry_count(self, name: str) -> int:
        return int(self.redis.hlen(keys.instance_entries(name)))

    def entries(self, name: str) -> set[str]:
        return {k.decode() for k in self.redis.hkeys(keys.instance_entries(name))}

    def split_known(self, name: str, entries: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """``entries`` split into those not yet pushed to the category (dedupe, S2) and those
        already there, with their first-seen time; one round trip."""
        if not entries:
            return [], {}
        found = self.redis.hmget(keys.instance_entries(name), entries)
        fresh: list[str] = []
        known: dict[str, str] = {}
        for entry, seen in zip(entries, found, strict=True):
            if seen is None:
                fresh.append(entry)
            else:
                known[entry] = seen.split(b" ", 1)[0].decode()
        return fresh, known

    def stage(self, staging: str, timed_entries: dict[str, float]) -> None:
        """Queue entries of the current window in the run's ``staging``, by record time."""
        if timed_entries:
            with self.redis.pipeline(transaction=False) as pipe:
                # GT: an entry seen twice keeps its newest record time (new ones are added).
                pipe.zadd(staging, timed_entries, gt=True)
                pipe.expire(staging, STAGING_TTL)
                pipe.execute()

    def record_page(
        self,
        name: str,
        staging: str,
        known: dict[str, str],
        staged: dict[str, float],
        at: datetime,
    ) -> None:
        """One page's dedupe outcome in one round trip: entries already in the category get
        their last-seen time (``known``: entry -> first seen, as :meth:`split_known` gives
        it), new ones are staged (:meth:`stage`)."""
        if not known and not staged:
            return
        stamp = int(at.timestamp())
        with self.redis.pipeline(transaction=False) as pipe:
            if known:
                mapping = {entry: f"{first} {stamp}" for entry, first in known.items()}
                pipe.hset(keys.instance_entries(name), mapping=mapping)
            if staged:
                pipe.zadd(staging, staged, gt=True)
                pipe.expire(staging, STAGING_TTL)
            pipe.execute()

    def staged_count(self, staging: str) -> int:
        return int(self.redis.zcard(staging))

    def staged_newest_first(self, staging: str, chunk: int = 5000) -> Iterator[list[str]]:
        """The staged entries, newest record first, ``chunk`` at a time (bounded memory)."""
        total = self.staged_count(staging)
        for start in range(0, total, chunk):
            raw = self.redis.zrevrange(staging, start, start + chunk - 1)
            yield [v.decode() for v in raw]

    def clear_staged(self, staging: str) -> None:
        """Forget a run's staging (its own key: no other run's is touched)."""
        self.redis.delete(staging)

    def record_pushed(self, name: str, entries: Iterable[str], at: datetime) -> None:
        """Remember entries ZIA accepted: first seen now, last seen now."""
        stamp = int(at.timestamp())
        mapping = {entry: f"{stamp} {stamp}" for entry in entries}
        if mapping:
            self.redis.hset(keys.instance_entries(name), mapping=mapping)

    def restage_pushed(self, name: str, staging: str, lock: RunLock) -> int:
        """Stage again everything the category held (it was deleted in ZIA) and forget it was
        pushed (fenced by ``lock``); returns how many entries are staged."""
        batch: dict[str, float] = {}
        for entry, value in self.redis.hscan_iter(keys.instance_entries(name), count=1000):
            batch[entry.decode()] = float(value.split(b" ", 1)[-1])
            if len(batch) >= 1000:
                self.stage(staging, batch)
                batch = {}
        self.stage(staging, batch)
        self._fenced.call(name, lock, "DEL", keys.instance_entries(name))
        return self.staged_count(staging)

    def record_removed(self, name: str, lock: RunLock, entries: Sequence[str]) -> None:
        """Forget entries taken out of the category (fenced by ``lock``)."""
        if entries:
            self._fenced.call(name, lock, "HDEL", keys.instance_entries(name), *entries)
