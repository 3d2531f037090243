"""Why each entry of a category is there: its provenance (docs/design.md#provenance-and-audit).

ZIA keeps one description per category and nothing per entry, so the answer to "why is this
blocked?" is kept here, beside the ledger: for each entry of an instance, the sources that
produced it, how many Mimecast records did (its sightings), when it was pushed, and the newest
three sightings, each as (record time, Mimecast's verdict, a keyed hash of the message id).

Nothing that names a person or a message is stored: no address, no subject, no query string,
and the message id only as an HMAC whose key is derived from the Mimecast account's secret, so
a help desk can match it against a message it already holds but Redis alone reveals nothing.

One hash per instance, entry -> a small JSON object; bounded by the category's own size, since
an entry's provenance is forgotten with the entry. Sightings merge in Redis (one Lua call per
chunk), so concurrent writers never lose a count and a run never reads before it writes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import redis

from threatshare import keys
from threatshare.state.chunks import check_lines, chunked
from threatshare.state.streamed import call_per_chunk

#: Sightings kept per entry: enough to show a pattern, few enough to keep memory flat.
KEEP = 3
#: What ``src`` may hold (the names are written into JSON unquoted by :func:`facts`).
SOURCE_NAMES = frozenset({"", "malicious_urls", "url_domains", "malicious_domains"})
#: Entries merged per Lua call: bounds the script's argument list (Lua's unpack stops near 8,000).
CHUNK = 500

# KEYS[1] the hash; ARGV[1] how many sightings to keep, ARGV[2] lines in pairs (entry, JSON of
# new facts: the run's count of sightings and its newest ones; see _packed). A sighting already
# kept (same time and message) is a re-read of the window's overlap, not a new one; so is one
# older than every kept sighting once the list is full: neither counts.
_MERGE = """
local keep = tonumber(ARGV[1])
local lines = string.gmatch(ARGV[2], '[^\\n]+')
for entry in lines do
  local new = cjson.decode(lines())
  local raw = redis.call('HGET', KEYS[1], entry)
  local old = raw and cjson.decode(raw) or {src = '', n = 0, ev = {}}
  if type(old.ev) ~= 'table' then old.ev = {} end
  for s in string.gmatch(new.src, '[^,]+') do
    if not string.find(',' .. old.src .. ',', ',' .. s .. ',', 1, true) then
      old.src = (old.src == '') and s or (old.src .. ',' .. s)
    end
  end
  local added = new.n or #new.ev
  for _, e in ipairs(new.ev) do
    local known = false
    for _, k in ipairs(old.ev) do
      if k[1] == e[1] and k[3] == e[3] then known = true end
    end
    local stale = #old.ev >= keep and e[1] < old.ev[#old.ev][1]
    if known or stale then
      added = added - 1
    else
      table.insert(old.ev, e)
      table.sort(old.ev, function(a, b) return a[1] > b[1] end)
      while #old.ev > keep do table.remove(old.ev) end
    end
  end
  old.n = old.n + math.max(added, 0)
  if (old.at == nil or old.at == cjson.null) and new.at ~= cjson.null then old.at = new.at end
  redis.call('HSET', KEYS[1], entry, cjson.encode(old))
end
return 1
"""

# KEYS[1] the hash; ARGV[1] lines in pairs (entry, JSON): each written unless the entry has one.
_FIRST = """
local lines = string.gmatch(ARGV[1], '[^\\n]+')
for entry in lines do
  redis.call('HSETNX', KEYS[1], entry, lines())
end
return 1
"""


class Sighting(NamedTuple):
    """One Mimecast record that produced an entry: when, Mimecast's verdict, the message.
    (A tuple: a run makes one per kept sighting, and JSON writes it as the array stored.)"""

    at: int  # the record's time, epoch seconds
    verdict: str  # a URL log's category, or the impersonation identifiers that fired
    message: str  # keyed hash of the message id ("" when the record carried none)


def evidence_json(newest: Sequence[Sighting]) -> str:
    """The stored form of an entry's newest sightings (at most :data:`KEEP`, newest first):
    JSON, formatted rather than encoded (a run writes one per kind of record it met)."""
    kept = sorted(newest, key=_at, reverse=True)[:KEEP]
    sightings = [f"[{int(s.at)},{_json_text(s.verdict)},{_json_text(s.message)}]" for s in kept]
    return "[" + ",".join(sightings) + "]"


def _json_text(text: str) -> str:
    """``text`` as a JSON string: a hash or a one-word verdict needs no escaping."""
    if text.isascii() and (text.isalnum() or not text):
        return f'"{text}"'
    return _json_escaped(text)


@functools.lru_cache(maxsize=1024)
def _json_escaped(text: str) -> str:
    return json.dumps(text)  # verdicts of several words: few, and repeated on every record


def facts(source: str, count: int, evidence: str) -> str:
    """What a run adds to an entry's provenance, as the merge reads it: its ``source`` (a
    source name, or "" for none), ``count`` sightings and their newest (:func:`evidence_json`).
    Formatted rather than encoded: a run writes one per entry it met."""
    if source not in SOURCE_NAMES:
        raise ValueError(f"not a source: {source!r}")
    return f'{{"src":"{source}","n":{int(count)},"at":null,"ev":{evidence}}}'


@dataclass
class Provenance:
    """What is known of one entry."""

    sources: list[str] = field(default_factory=list)
    sightings: int = 0
    pushed_at: int | None = None
    evidence: list[Sighting] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Provenance:
        data = json.loads(raw)
        evidence = data.get("ev") if isinstance(data.get("ev"), list) else []
        return cls(
            sources=[s for s in str(data.get("src") or "").split(",") if s],
            sightings=int(data.get("n") or 0),
            pushed_at=int(data["at"]) if isinstance(data.get("at"), int | float) else None,
            evidence=[Sighting(int(e[0]), str(e[1]), str(e[2])) for e in evidence],
        )


class MessageKey:
    """The keyed hash of message ids for one Mimecast account."""

    def __init__(self, secret: str) -> None:
        # A key of its own, derived from the account's secret: the hashes are no use to whoever
        # reads Redis without the configuration, and the secret itself is never used twice.
        self._key = hmac.new(secret.encode(), b"threatshare message id", hashlib.sha256).digest()

    def __call__(self, message_id: object) -> str:
        if not isinstance(message_id, str) or not message_id:
            return ""
        # BLAKE2b in keyed mode is a MAC by design, and a fraction of HMAC's cost per sighting.
        digest = hashlib.blake2b(message_id.encode(), key=self._key, digest_size=8)
        return digest.hexdigest()


class ProvenanceBook:
    """The provenance of every entry of one instance."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.redis = client
        self.key = keys.instance_provenance(name)
        self._merge = client.register_script(_MERGE)
        self._first = client.register_script(_FIRST)

    def record(
        self,
        sightings: Mapping[str, Sequence[Sighting]],
        sources: Mapping[str, str],
        counts: Mapping[str, int] | None = None,
    ) -> None:
        """Merge new sightings (entry -> its newest sightings in this run; ``counts``: how many
        it had in all, when more than those) and each entry's source."""
        self.merge(_all_facts(sightings, sources, counts))

    def merge(self, new: Mapping[str, str]) -> None:
        """Merge a run's :func:`facts` (entry -> facts) into the entries' provenance."""
        _check(new)
        chunks = ((KEEP, _packed(chunk)) for chunk in chunked(new.items(), CHUNK))
        call_per_chunk(self.redis, self._merge, [self.key], chunks)

    def write_new(self, new: Mapping[str, str]) -> None:
        """The provenance of entries met for the first time (not in the category): written as
        it is, without reading, unless one is there already (then it is kept: those entries
        are merged by the run that pushes them again)."""
        _check(new)
        chunks = ((_packed(chunk),) for chunk in chunked(new.items(), CHUNK))
        call_per_chunk(self.redis, self._first, [self.key], chunks)

    def pushed(self, entries: Iterable[str], at: int) -> None:
        """Mark when entries were pushed (the time an entry became part of the category)."""
        marked = json.dumps({"src": "", "at": at, "ev": []})
        self.merge(dict.fromkeys(entries, marked))

    def get(self, entries: Sequence[str]) -> dict[str, Provenance]:
        """The provenance of those of ``entries`` that have one; one round trip per chunk."""
        found: dict[str, Provenance] = {}
        for chunk in chunked(entries, CHUNK):
            for entry, raw in zip(chunk, self.redis.hmget(self.key, chunk), strict=True):
                if raw is not None:
                    found[entry] = Provenance.from_json(raw)
        return found

    def forget(self, entries: Sequence[str]) -> None:
        """Forget the provenance of entries that left the category."""
        for chunk in chunked(entries, CHUNK):
            self.redis.hdel(self.key, *chunk)

    def forget_all(self) -> None:
        self.redis.delete(self.key)

    def sweep(self, held: Callable[[list[str]], list[bool]]) -> int:
        """Forget the provenance of entries the category does not hold (``held`` answers for a
        chunk): sightings of threats left out for lack of room, or of a run that died before
        pushing. Run with reconciliation; how many were forgotten."""
        orphans: list[str] = []
        chunk: list[str] = []
        for raw, _ in self.redis.hscan_iter(self.key, count=CHUNK):
            chunk.append(raw.decode() if isinstance(raw, bytes) else raw)
            if len(chunk) >= CHUNK:
                orphans += [e for e, h in zip(chunk, held(chunk), strict=True) if not h]
                chunk = []
        if chunk:
            orphans += [e for e, h in zip(chunk, held(chunk), strict=True) if not h]
        self.forget(orphans)
        return len(orphans)


def _all_facts(
    sightings: Mapping[str, Sequence[Sighting]],
    sources: Mapping[str, str],
    counts: Mapping[str, int] | None,
) -> dict[str, str]:
    return {
        entry: facts(
            sources.get(entry, ""),
            counts.get(entry, len(seen)) if counts is not None else len(seen),
            evidence_json(seen),
        )
        for entry, seen in sightings.items()
    }


def _packed(pairs: Sequence[tuple[str, str]]) -> str:
    """Pairs (entry, JSON) as the scripts read them: one line each, so a chunk is one argument
    rather than two a pair (the client's cost is per argument); see :func:`_check`."""
    return "\n".join([f"{entry}\n{facts}" for entry, facts in pairs])


def _check(new: Mapping[str, str]) -> None:
    """Refuse, before anything is written, an entry or a JSON that would shift every pair
    after it in :func:`_packed` (JSON holds no raw line break; an entry none either)."""
    check_lines(new)
    check_lines(new.values())


def _at(sighting: Sighting) -> int:
    return sighting.at
