"""The audit trail: every change threatshare makes to a category, one line per entry
(docs/design.md#provenance-and-audit).

A Redis stream shared by the fleet. Each item is one entry of one instance and what happened to
it (:data:`ACTIONS`), with the run that did it and, for an unblock, who and why. Item ids are
taken from the product's clock (milliseconds), not Redis's, so retention by age works on the
same clock as everything else (a test or bench can drive a year in seconds); when two writers'
clocks disagree, an id never goes backwards: the later write takes the newer of the two.

Bounded twice: by age (``audit_retention``, trimmed on every append) and by length
(:data:`MAX_ITEMS`, so a burst — a 100,000-entry backlog — cannot grow it without limit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import redis

from threatshare import keys
from threatshare.timestamps import to_iso

Action = Literal[
    "added",
    "expired",
    "evicted",
    "withdrawn",
    "unblocked",
    "removed_by_hand",
    "adopted",
    "recreated",
]
ACTIONS: tuple[str, ...] = get_args(Action)
#: Items kept at most, whatever their age: ~150 bytes each, so about 150 MB at the very worst
#: would be 1,000,000; half that keeps a year of a busy instance well under 100 MB.
MAX_ITEMS = 500_000
#: Items appended per Lua call: bounds the script's argument list.
CHUNK = 500
_FIELDS = ("instance", "entry", "action", "run_id", "who", "reason")

# KEYS[1] the stream; ARGV[1] the clock's milliseconds, ARGV[2] the length cap, ARGV[3] the
# oldest id to keep (age), ARGV[4] how many fields per item, then the items' field values.
# The id is "<ms>-<seq>": never below the stream's last id, so writers with skewed clocks
# never fail (Redis 6.2 has no "<ms>-*").
_APPEND = """
local ms = tonumber(ARGV[1])
local seq = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last then
  local lms, lseq = string.match(last[1], '(%d+)-(%d+)')
  lms, lseq = tonumber(lms), tonumber(lseq)
  if lms >= ms then ms, seq = lms, lseq + 1 end
end
local names = {'instance', 'entry', 'action', 'run_id', 'who', 'reason'}
local width = tonumber(ARGV[4])
for i = 5, #ARGV, width do
  local item = {}
  for j = 1, width do
    if ARGV[i + j - 1] ~= '' then
      table.insert(item, names[j])
      table.insert(item, ARGV[i + j - 1])
    end
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-%d', ms, seq),
             unpack(item))
  seq = seq + 1
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class AuditLine:
    """One item of the trail."""

    at: datetime
    instance: str
    entry: str
    action: str
    run_id: str
    who: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "at": to_iso(self.at),
            "instance": self.instance,
            "entry": self.entry,
            "action": self.action,
            "run_id": self.run_id,
            "who": self.who,
            "reason": self.reason,
        }


class AuditTrail:
    """The fleet's audit trail, kept for ``retention``."""

    def __init__(self, client: redis.Redis, retention: timedelta) -> None:
        self.redis = client
        self.retention = retention
        self._append = client.register_script(_APPEND)

    def append(
        self,
        instance: str,
        action: Action,
        entries: Sequence[str],
        *,
        at: datetime,
        run_id: str,
        who: str = "",
        reason: str = "",
    ) -> None:
        """One item per entry of ``entries``: ``action`` done by ``run_id`` at ``at``."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        ms = int(at.timestamp() * 1000)
        oldest = max(0, ms - int(self.retention.total_seconds() * 1000))
        for start in range(0, len(entries), CHUNK):
            args: list[object] = [ms, MAX_ITEMS, oldest, len(_FIELDS)]
            for entry in entries[start : start + CHUNK]:
                args += [instance, entry, action, run_id, who, reason]
            self._append(keys=[keys.audit_trail()], args=args)

    def read(
        self,
        *,
        instance: str | None = None,
        entry: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditLine]:
        """Items oldest first, filtered; streamed a thousand at a time (bounded memory)."""
        start = f"{int(since.timestamp() * 1000)}-0" if since is not None else "-"
        produced = 0
        while True:
            batch = self.redis.xrange(keys.audit_trail(), start, "+", count=1000)
            for item_id, raw in batch:
                line = _line(item_id, raw)
                if (instance is None or line.instance == instance) and (
                    entry is None or line.entry == entry
                ):
                    yield line
                    produced += 1
                    if limit is not None and produced >= limit:
                        return
            if len(batch) < 1000:
                return
            start = "(" + _text(batch[-1][0])

    def length(self) -> int:
        return int(self.redis.xlen(keys.audit_trail()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _line(item_id: bytes | str, raw: dict[bytes, bytes]) -> AuditLine:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    ms = int(_text(item_id).split("-", 1)[0])
    return AuditLine(
        at=datetime.fromtimestamp(ms / 1000, UTC),
        instance=fields.get("instance", ""),
        entry=fields.get("entry", ""),
        action=fields.get("action", ""),
        run_id=fields.get("run_id", ""),
        who=fields.get("who"),
        reason=fields.get("reason"),
    )
