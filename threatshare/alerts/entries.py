"""What the outbox keeps in Redis: one JSON entry per alert and channel, with its delivery
record, and the Lua scripts that queue, claim and settle entries atomically (the protocol is
described in :mod:`threatshare.alerts.outbox`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace

from threatshare.alerts.channels import EMAIL, channel_of
from threatshare.alerts.message import Alert

# Queue the alert's entries (ARGV[4..], one per channel) only if its incident marker is new: all
# or nothing, whatever crashes. Then, over the bound ARGV[3], drop the oldest alerts that are not
# halt alerts, never a halted one. Returns {queued, dropped}.
PUT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return {0, 0} end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
local excess = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[3])
local dropped = 0
if excess > 0 then
  for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if dropped >= excess then break end
    local ok, entry = pcall(cjson.decode, raw)
    local kind = ok and type(entry) == 'table' and type(entry.alert) == 'table'
      and entry.alert.kind or nil
    if kind ~= 'halted' then
      dropped = dropped + redis.call('LREM', KEYS[2], 1, raw)
    end
  end
end
return {1, dropped}
"""
# Take an entry for sending only while it is still queued and nobody else is sending it.
CLAIM = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
return 0
"""
# Replace the entry in place (keeps its place in the queue), or remove it when ARGV[2] is
# empty; then let the sending key go if it is still ours.
SETTLE = """
local pos = redis.call('LPOS', KEYS[1], ARGV[1])
if pos then
  if ARGV[2] == '' then
    redis.call('LREM', KEYS[1], 1, ARGV[1])
  else
    redis.call('LSET', KEYS[1], pos, ARGV[2])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return pos and 1 or 0
"""


@dataclass(frozen=True)
class Entry:
    """One queued alert with its delivery record, and the exact JSON it is stored as."""

    id: str
    alert: Alert
    queued_at: float
    attempts: int
    next_try: float
    last_error: str | None
    raw: str | bytes

    @classmethod
    def new(cls, alert: Alert, now: float) -> Entry:
        return cls._build(uuid.uuid4().hex, alert, now, 0, now, None)

    @classmethod
    def _build(
        cls,
        alert_id: str,
        alert: Alert,
        queued: float,
        attempts: int,
        next_try: float,
        error: str | None,
    ) -> Entry:
        data = {
            "id": alert_id,
            "alert": alert.to_dict(),
            "queued_at": queued,
            "attempts": attempts,
            "next_try": next_try,
            "last_error": error,
        }
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return cls(alert_id, alert, queued, attempts, next_try, error, raw)

    @classmethod
    def parse(cls, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            alert=Alert.from_dict(data["alert"]),
            queued_at=float(data["queued_at"]),
            attempts=int(data["attempts"]),
            next_try=float(data["next_try"]),
            last_error=data.get("last_error"),
            raw=raw,
        )

    def failed(self, error: str, next_try: float) -> Entry:
        return self._build(self.id, self.alert, self.queued_at, self.attempts + 1, next_try, error)

    @property
    def channel(self) -> str:
        recipients = self.alert.recipients
        return channel_of(recipients[0]) if recipients else EMAIL


def per_channel(alert: Alert) -> list[Alert]:
    """``alert`` split by channel: its e-mail addresses together, each webhook alone. An alert
    for nobody stays one (e-mail) entry, to be logged."""
    emails = tuple(r for r in alert.recipients if channel_of(r) == EMAIL)
    hooks = [r for r in alert.recipients if channel_of(r) != EMAIL]
    parts = [replace(alert, recipients=emails)] if emails or not hooks else []
    return parts + [replace(alert, recipients=(hook,)) for hook in hooks]
