"""The ledger of one instance: what its category holds, and what the current window stages.

The entries pushed to the category live in one hash per instance (entry -> "<first seen> <last
seen>", epoch seconds): the dedupe of S2 reads it, and the lifecycle (expiry, capacity,
reconciliation, S13) builds on it. The entries of the window being worked on wait in a sorted
set scored by record time, so a run never holds a window in memory and can push newest first;
it survives a crash and is cleared when the next run begins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import redis

from threatshare import keys


class Ledger:
    """The per-instance record of entries, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

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

    def stage(self, name: str, timed_entries: dict[str, float]) -> None:
        """Queue entries of the current window for pushing, scored by record time."""
        if timed_entries:
            # GT: an entry seen twice keeps its newest record time (and new ones are added).
            self.redis.zadd(keys.instance_pending(name), timed_entries, gt=True)

    def record_page(
        self, name: str, known: dict[str, str], staged: dict[str, float], at: datetime
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
                pipe.zadd(keys.instance_pending(name), staged, gt=True)
            pipe.execute()

    def staged_count(self, name: str) -> int:
        return int(self.redis.zcard(keys.instance_pending(name)))

    def staged_newest_first(self, name: str, chunk: int = 5000) -> Iterator[list[str]]:
        """The staged entries, newest record first, ``chunk`` at a time (bounded memory)."""
        total = self.staged_count(name)
        for start in range(0, total, chunk):
            raw = self.redis.zrevrange(keys.instance_pending(name), start, start + chunk - 1)
            yield [v.decode() for v in raw]

    def clear_staged(self, name: str) -> None:
        self.redis.delete(keys.instance_pending(name))

    def record_pushed(self, name: str, entries: Iterable[str], at: datetime) -> None:
        """Remember entries ZIA accepted: first seen now, last seen now."""
        stamp = int(at.timestamp())
        mapping = {entry: f"{stamp} {stamp}" for entry in entries}
        if mapping:
            self.redis.hset(keys.instance_entries(name), mapping=mapping)

    def restage_pushed(self, name: str) -> int:
        """Stage again everything the category held (it was deleted in ZIA) and forget it was
        pushed; returns how many entries are staged."""
        batch: dict[str, float] = {}
        for entry, value in self.redis.hscan_iter(keys.instance_entries(name), count=1000):
            batch[entry.decode()] = float(value.split(b" ", 1)[-1])
            if len(batch) >= 1000:
                self.stage(name, batch)
                batch = {}
        self.stage(name, batch)
        self.redis.delete(keys.instance_entries(name))
        return self.staged_count(name)

    def record_removed(self, name: str, entries: Sequence[str]) -> None:
        if entries:
            self.redis.hdel(keys.instance_entries(name), *entries)
