"""The ledger of one instance: what its category holds, what the current window stages, and
what was removed from the category by hand (docs/design.md#state-in-redis,
docs/design.md#reconciliation).

Every entry the category holds for the instance is in a sorted set scored by its *last
sighting*: the record time of the newest Mimecast record that produced it (not the time it
was pushed). Expiry asks for the entries scored below a cutoff, eviction for the lowest
scores, the status for the lowest one: none of them reads every entry. The first sighting is
kept beside it in a hash. Sightings only move forward (``ZADD GT``), so a late or re-read
record never makes an entry look older.

The entries of the window being worked on wait in a sorted set scored by record time, so a run
holds at most a bounded part of a window in memory (what one pull met) and can push newest
first. That *staging* key is the run's own (:meth:`Ledger.staging`): two runs of one instance
never clear each other's, and a crashed run's staging expires by itself.

Writes that forget entries are fenced by the run's lock (:mod:`threatshare.state.fenced`): a
run whose lock lapsed cannot undo what its successor recorded. Every write that carries entries
is cut into calls of a bounded size (:mod:`threatshare.state.chunks`), and so is every read of
many entries by name, whatever the number of entries.

Entries an admin removed from the category by hand get a tombstone (when it was noticed): they
are pushed again only for a record newer than that. Tombstones older than Mimecast's 30 days
are dropped, since no record that old can come back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import redis

from threatshare import keys
from threatshare.state.chunks import check_lines, chunked, chunked_map
from threatshare.state.fenced import FencedWriter
from threatshare.state.lock import RunLock
from threatshare.state.streamed import call_per_chunk

#: Mimecast keeps 30 days of logs: a tombstone older than that (and a day) guards nothing.
TOMBSTONE_KEEP = timedelta(days=31)
_SCAN = 1000
#: How long a run's staging outlives its last write: beyond any run's deadline (at most 1 h).
STAGING_TTL = 2 * 3600


# KEYS: last seen, tombstones, the run's staging. ARGV: write (1/0), the staging's TTL, and lines
# "record-time entry" (at most WRITE_CHUNK: Lua's unpack stops near 8,000 values). Returns one
# letter per line: k (in the category: sighting recorded), b (removed by hand after that
# record: left out), f (new: staged).
_RECORD_MET = """
local write = ARGV[1] == '1'
local ats, entries = {}, {}
for at, entry in string.gmatch(ARGV[3], '([^ \\n]+) ([^\\n]+)') do
  ats[#ats + 1] = at
  entries[#entries + 1] = entry
end
if #entries == 0 then return '' end
local out, sighted, fresh = {}, {}, {}
-- One command per kind of work for the whole chunk, not one per entry.
for i, score in ipairs(redis.call('ZMSCORE', KEYS[1], unpack(entries))) do
  if score then
    out[i] = 'k'
    sighted[#sighted + 1] = ats[i]
    sighted[#sighted + 1] = entries[i]
  else
    out[i] = 'f'
    fresh[#fresh + 1] = i
  end
end
if #fresh > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  local names = {}
  for j, i in ipairs(fresh) do names[j] = entries[i] end
  local kept = {}
  for j, stone in ipairs(redis.call('ZMSCORE', KEYS[2], unpack(names))) do
    local i = fresh[j]
    if stone and tonumber(ats[i]) <= tonumber(stone) then out[i] = 'b' else kept[#kept + 1] = i end
  end
  fresh = kept
end
if write then
  if #sighted > 0 then redis.call('ZADD', KEYS[1], 'GT', unpack(sighted)) end
  if #fresh > 0 then
    local staged = {}
    for _, i in ipairs(fresh) do
      staged[#staged + 1] = ats[i]
      staged[#staged + 1] = entries[i]
    end
    redis.call('ZADD', KEYS[3], 'GT', unpack(staged))
    redis.call('EXPIRE', KEYS[3], ARGV[2])
  end
end
return table.concat(out)
"""


def _decoded(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


class Ledger:
    """The per-instance record of entries, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._fenced = FencedWriter(client)
        self._met = client.register_script(_RECORD_MET)

    @staticmethod
    def staging(name: str, run_id: str) -> str:
        """The staging key of one run of instance ``name``."""
        return keys.run_staging(name, run_id)

    # --- the category's entries ------------------------------------------------------------

    def entry_count(self, name: str) -> int:
        return int(self.redis.zcard(keys.instance_last_seen(name)))

    def scan(self, name: str) -> Iterator[str]:
        """Every entry of the category, a thousand per round trip (bounded memory)."""
        for entry, _ in self.redis.zscan_iter(keys.instance_last_seen(name), count=_SCAN):
            yield entry.decode()

    def last_seen(self, name: str, entries: Sequence[str]) -> list[float | None]:
        """The last sighting of each of ``entries`` (None: not in the category); one call."""
        if not entries:
            return []
        return [None if s is None else float(s) for s in self._zmscore(name, entries)]

    def first_seen(self, name: str, entries: Sequence[str]) -> list[float | None]:
        """The first sighting of each of ``entries`` (None: unknown); one call."""
        if not entries:
            return []
        raw = self.redis.hmget(keys.instance_first_seen(name), list(entries))
        return [None if v is None else float(v) for v in raw]

    def _zmscore(self, name: str, entries: Sequence[str]) -> list[float | None]:
        key = keys.instance_last_seen(name)
        scores: list[float | None] = []
        for chunk in chunked(entries):
            scores.extend(self.redis.zmscore(key, chunk))
        return scores

    def split_known(self, name: str, entries: Sequence[str]) -> tuple[list[str], list[str]]:
        """``entries`` split into those not in the category (dedupe, docs/design.md#entries) and
        those already there; one round trip."""
        fresh: list[str] = []
        known: list[str] = []
        for entry, seen in zip(entries, self.last_seen(name, entries), strict=True):
            (fresh if seen is None else known).append(entry)
        return fresh, known

    def oldest(self, name: str, count: int) -> list[tuple[str, float]]:
        """The ``count`` least recently seen entries, oldest first, with their last sighting."""
        if count <= 0:
            return []
        raw = self.redis.zrange(keys.instance_last_seen(name), 0, count - 1, withscores=True)
        return [(e.decode(), float(s)) for e, s in raw]

    def oldest_last_seen(self, name: str) -> float | None:
        found = self.oldest(name, 1)
        return found[0][1] if found else None

    def due(self, name: str, before: datetime, limit: int) -> list[str]:
        """Up to ``limit`` entries last seen before ``before``, oldest first (expiry)."""
        raw = self.redis.zrangebyscore(
            keys.instance_last_seen(name), "-inf", f"({before.timestamp()}", start=0, num=limit
        )
        return _decoded(raw)

    def due_count(self, name: str, before: datetime) -> int:
        return int(
            self.redis.zcount(keys.instance_last_seen(name), "-inf", f"({before.timestamp()}")
        )

    def record_pushed(self, name: str, sightings: Mapping[str, float]) -> None:
        """Entries ZIA accepted, with the record time that produced each: first and last seen
        then; a tombstone of theirs is lifted (a newer record brought them back)."""
        for chunk in chunked_map(sightings):
            with self.redis.pipeline(transaction=False) as pipe:
                # GT also adds new members: a new entry gets its record time, a known one
                # keeps the newer of the two.
                pipe.zadd(keys.instance_last_seen(name), chunk, gt=True)
                for entry, seen in chunk.items():
                    pipe.hsetnx(keys.instance_first_seen(name), entry, int(seen))
                pipe.zrem(keys.instance_tombstones(name), *chunk)
                pipe.execute()

    def adopt(self, name: str, entries: Sequence[str], at: datetime) -> None:
        """Entries found in the category that the record lacks (Redis was wiped): they age
        from ``at``, like entries of its own, and expire on schedule."""
        stamp = at.timestamp()
        for chunk in chunked(entries):
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.instance_last_seen(name), dict.fromkeys(chunk, stamp), nx=True)
                for entry in chunk:
                    pipe.hsetnx(keys.instance_first_seen(name), entry, int(stamp))
                pipe.execute()

    def record_removed(self, name: str, lock: RunLock, entries: Sequence[str]) -> None:
        """Forget entries taken out of the category (fenced by ``lock``)."""
        for chunk in chunked(entries):
            self._fenced.call(name, lock, "ZREM", keys.instance_last_seen(name), *chunk)
            self._fenced.call(name, lock, "HDEL", keys.instance_first_seen(name), *chunk)

    def forget_all(self, name: str, lock: RunLock) -> None:
        """Forget every entry (the category is gone), fenced by ``lock``."""
        self._fenced.call(name, lock, "DEL", keys.instance_last_seen(name))
        self._fenced.call(name, lock, "DEL", keys.instance_first_seen(name))

    # --- removed by hand -------------------------------------------------------------------

    def tombstone(self, name: str, lock: RunLock, entries: Sequence[str], at: datetime) -> None:
        """Entries removed by hand, noticed at ``at``: dropped from the record (fenced by
        ``lock``), and tombstoned so that only a newer record pushes them again."""
        if not entries:
            return
        key = keys.instance_tombstones(name)
        for chunk in chunked(entries):
            self.redis.zadd(key, dict.fromkeys(chunk, at.timestamp()))
        self.redis.zremrangebyscore(key, "-inf", f"({(at - TOMBSTONE_KEEP).timestamp()}")
        self.record_removed(name, lock, entries)

    def stage(self, staging: str, timed_entries: Mapping[str, float]) -> None:
        """Queue entries of the current window in the run's ``staging``, by record time."""
        for chunk in chunked_map(timed_entries):
            with self.redis.pipeline(transaction=False) as pipe:
                # GT: an entry seen twice keeps its newest record time (new ones are added).
                pipe.zadd(staging, chunk, gt=True)
                pipe.expire(staging, STAGING_TTL)
                pipe.execute()

    def record_met(
        self, name: str, staging: str, met: Mapping[str, float], *, write: bool = True
    ) -> str:
        """Dedupe what a pull met (entry -> its newest record time) against the category, one
        call per chunk: an entry the category holds gets its sighting (``k``), one removed by
        hand after that record is left out (``b``, its tombstone being newer), any other is staged
        (``f``). Returns those letters, one per entry of ``met`` in order; with ``write``
        false nothing is written (a dry run)."""
        if not met:
            return ""
        key, stones = keys.instance_last_seen(name), keys.instance_tombstones(name)
        # One line per entry, read by the script without a Redis argument each. Entries hold
        # no line break (ZIA's format, checked before anything is staged); one that did would
        # be read as two, so it is refused here, before anything is written.
        check_lines(met)
        # Built one at a time, as they are sent: Redis works through one chunk while the next
        # is built.
        chunks = (
            (int(write), STAGING_TTL, "\n".join([f"{when!r} {entry}" for entry, when in chunk]))
            for chunk in chunked(met.items())
        )
        answers = call_per_chunk(self.redis, self._met, [key, stones, staging], chunks)
        letters = "".join(raw.decode() if isinstance(raw, bytes) else str(raw) for raw in answers)
        if len(letters) != len(met):
            raise ValueError("the script read another number of entries than it was sent")
        return letters

    def staged_count(self, staging: str) -> int:
        return int(self.redis.zcard(staging))

    def staged_newest_first(self, staging: str, chunk: int = 5000) -> Iterator[dict[str, float]]:
        """The staged entries with their record times, newest first, ``chunk`` at a time."""
        total = self.staged_count(staging)
        for start in range(0, total, chunk):
            raw = self.redis.zrevrange(staging, start, start + chunk - 1, withscores=True)
            yield {e.decode(): float(s) for e, s in raw}

    def staged_oldest(self, staging: str, count: int) -> list[tuple[str, float]]:
        if count <= 0:
            return []
        raw = self.redis.zrange(staging, 0, count - 1, withscores=True)
        return [(e.decode(), float(s)) for e, s in raw]

    def unstage(self, staging: str, entries: Sequence[str]) -> None:
        for chunk in chunked(entries):
            self.redis.zrem(staging, *chunk)

    def clear_staged(self, staging: str) -> None:
        """Forget a run's staging (its own key: no other run's is touched)."""
        self.redis.delete(staging)

    def restage_all(self, name: str, staging: str, lock: RunLock) -> int:
        """Stage again every entry the category held (it was deleted in ZIA), each with its
        last sighting, and forget it was pushed (fenced by ``lock``); how many are staged."""
        batch: dict[str, float] = {}
        for entry, seen in self.redis.zscan_iter(keys.instance_last_seen(name), count=_SCAN):
            batch[entry.decode()] = float(seen)
            if len(batch) >= _SCAN:
                self.stage(staging, batch)
                batch = {}
        self.stage(staging, batch)
        self.forget_all(name, lock)
        return self.staged_count(staging)

    # --- upgrade ---------------------------------------------------------------------------

    def migrate(self, name: str) -> int:
        """Move a record kept by an earlier version (one hash, entry -> "first last") into the
        sorted record; how many entries moved (0 when there was none)."""
        old = keys.instance_entries(name)
        if not self.redis.exists(old):
            return 0
        moved = 0
        for entry, value in self.redis.hscan_iter(old, count=_SCAN):
            first, _, last = value.decode().partition(" ")
            seen = float(last or first)
            self.redis.zadd(keys.instance_last_seen(name), {entry.decode(): seen}, gt=True)
            self.redis.hsetnx(keys.instance_first_seen(name), entry.decode(), int(float(first)))
            moved += 1
        self.redis.delete(old)
        return moved
