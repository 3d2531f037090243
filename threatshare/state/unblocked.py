"""The runtime allow list of an instance (docs/design.md#unblocking): entries an operator unblocked.

Each unblocked entry is kept in Redis with when, why and by whom; every run reads the list at
its start and never pushes an entry at or under one of them, so a false positive stays out of
the category on every worker at once. The configuration's ``allow`` list stays the durable,
reviewed one; this one is the button for now.

An entry is also kept as *pending* from the moment it is listed until ZIA accepted the removal
of what the category held at or under it: when that removal fails (an edit lock, a 5xx, the
process killed), the next run of the instance finishes it. Nothing pending, the usual case,
costs a run one Redis read and no ZIA call.

*At or under* follows ZIA's matching: a host-level entry (``evil.example``, ``.evil.example``)
covers that host and every subdomain, with any port and path; ``host:port`` covers that host
and port with any path; a path entry (``evil.example/login``) covers itself and every path
below it (``evil.example/login/...``). What an operator types is read by
:func:`threatshare.indicators.entry.entry_of`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import redis

from threatshare import keys
from threatshare.scrub import clean_text
from threatshare.state.chunks import chunked_map
from threatshare.state.fenced import FencedWriter
from threatshare.state.lock import RunLock
from threatshare.timestamps import from_iso, to_iso

MAX_REASON = 500
MAX_WHO = 64


def _authority(entry: str) -> tuple[str, str | None, str | None]:
    """(host, port, path) of an entry; host without the leading wildcard dot."""
    bare = entry.lstrip(".")
    authority, slash, path = bare.partition("/")
    if authority.count(":") >= 2:  # an IPv6 literal: host-level only
        return authority, None, None
    host, colon, port = authority.partition(":")
    return host, (port if colon else None), (slash + path if slash else None)


def covers(unblocked: str, entry: str) -> bool:
    """Whether ``entry`` is at or under ``unblocked`` (see the module)."""
    host, port, path = _authority(unblocked)
    e_host, e_port, e_path = _authority(entry)
    if path is None:
        if port is not None:
            return e_host == host and e_port == port
        return e_host == host or e_host.endswith("." + host)
    if (e_host, e_port) != (host, port) or e_path is None:
        return False
    return e_path == path or e_path.startswith(path.rstrip("/") + "/")


@dataclass(frozen=True)
class Unblock:
    """One entry of the runtime allow list."""

    entry: str
    at: datetime
    reason: str
    who: str

    def to_json(self) -> str:
        return json.dumps({"at": to_iso(self.at), "reason": self.reason, "who": self.who})

    @classmethod
    def from_json(cls, entry: str, raw: str | bytes) -> Unblock:
        data = json.loads(raw)
        at = from_iso(data.get("at"))
        assert at is not None
        return cls(entry, at, str(data.get("reason") or ""), str(data.get("who") or ""))


class Matcher:
    """Answers "is this entry unblocked?" for a run, from the list read at its start."""

    def __init__(self, unblocked: Iterable[str]) -> None:
        self._hosts: dict[str, list[str]] = {}
        for entry in unblocked:
            self._hosts.setdefault(_authority(entry)[0], []).append(entry)

    def __bool__(self) -> bool:
        return bool(self._hosts)

    def __call__(self, entry: str) -> bool:
        if not self._hosts:
            return False
        labels = _authority(entry)[0].split(".")
        for i in range(len(labels)):
            for unblocked in self._hosts.get(".".join(labels[i:]), ()):
                if covers(unblocked, entry):
                    return True
        return False

    def any_under(self, wildcard: str) -> bool:
        """Whether a ``.domain`` entry would cover an unblocked entry (one at or under the
        domain): such a wildcard is never pushed."""
        domain = wildcard.lstrip(".")
        suffix = "." + domain
        return any(host == domain or host.endswith(suffix) for host in self._hosts)


class UnblockList:
    """The runtime allow list of one instance."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.redis = client
        self.name = name
        self.key = keys.instance_unblocked(name)
        self.pending_key = keys.instance_unblock_pending(name)

    def add(self, entries: Iterable[str], at: datetime, reason: str, who: str) -> tuple[str, str]:
        """List ``entries``, each pending until :meth:`removed` (one transaction per thousand);
        the reason and the name as kept (cleaned)."""
        reason = clean_text(reason, MAX_REASON)
        who = clean_text(who, MAX_WHO) or "unknown"
        mapping = {e: Unblock(e, at, reason, who).to_json() for e in entries}
        for chunk in chunked_map(mapping):
            with self.redis.pipeline() as pipe:
                pipe.hset(self.key, mapping=chunk)
                pipe.sadd(self.pending_key, *chunk)
                pipe.execute()
        return reason, who

    def undo(self, entry: str) -> bool:
        """Take ``entry`` off the list (and off what is pending); False when it was not on it."""
        with self.redis.pipeline() as pipe:
            pipe.hdel(self.key, entry)
            pipe.srem(self.pending_key, entry)
            return bool(pipe.execute()[0])

    def clear(self) -> int:
        count = int(self.redis.hlen(self.key))
        self.redis.delete(self.key, self.pending_key)
        return count

    def pending(self) -> list[str]:
        """Listed entries whose removal from the category ZIA has not accepted yet."""
        return sorted(e.decode() for e in self.redis.smembers(self.pending_key))

    def removed(self, lock: RunLock, entries: Iterable[str]) -> None:
        """``entries`` are out of the category: no longer pending (fenced by ``lock``)."""
        FencedWriter(self.redis).call_each(self.name, lock, "SREM", self.pending_key, entries)

    def count(self) -> int:
        return int(self.redis.hlen(self.key))

    def entries(self) -> list[Unblock]:
        raw = self.redis.hgetall(self.key)
        return sorted(
            (Unblock.from_json(k.decode(), v) for k, v in raw.items()), key=lambda u: u.at
        )

    def matcher(self) -> Matcher:
        return Matcher(k.decode() for k in self.redis.hkeys(self.key))
