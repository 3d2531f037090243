"""The sightings a run meets, kept for the provenance of its entries
(docs/design.md#provenance-and-audit).

Per record, what it produced (the entries of one record, together), how many records did, and
the newest few of them (record time, verdict, message id as Mimecast sent them). Keeping them
per record rather than per entry halves the work of the pull's hot loop (a URL record gives a
URL and a host entry); :meth:`Sightings.flush` spreads them over the entries, cleans and hashes
only the few kept, and merges them into the entries' provenance in Redis: an entry of the
category has a provenance to merge with; one met for the first time has none yet, and is
written without a read (most of a backlog's entries).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from threatshare.indicators.evidence import cleaned
from threatshare.state.provenance import (
    KEEP,
    MessageKey,
    ProvenanceBook,
    Sighting,
    evidence_json,
    facts,
)

#: (record time, verdict, message id), as the record said them.
Seen = tuple[float, object, object]
Evidence = Callable[[Any], tuple[object, object]]


class _Keeper:
    """Kept sightings made fit to store: verdicts cleaned, message ids cleaned and hashed; both
    repeat across a run's records, so each is done once."""

    def __init__(self, key: MessageKey) -> None:
        self._key = key
        self._verdicts: dict[str, str] = {}
        self._messages: dict[str, str] = {}

    def __call__(self, kept: list[Seen]) -> list[Sighting]:
        return [
            Sighting(int(at), self._verdict(verdict), self._message(message))
            for at, verdict, message in kept
        ]

    def _verdict(self, raw: object) -> str:
        if not isinstance(raw, str):
            return ""
        text = self._verdicts.get(raw)
        if text is None:
            text = self._verdicts[raw] = cleaned(raw, None)[0]
        return text

    def _message(self, raw: object) -> str:
        if not isinstance(raw, str):
            return ""
        digest = self._messages.get(raw)
        if digest is None:
            digest = self._messages[raw] = self._key(cleaned(None, raw)[1])
        return digest


#: Length of a record kind's list once it holds KEEP sightings. The list is flat: the count of
#: records, then time, verdict and message id of each kept sighting, oldest first. One list per
#: kind and no tuple per sighting: a repeated record, most of a pull, allocates nothing kept,
#: and the garbage collector has a third of the objects to walk.
_FULL = 1 + 3 * KEEP


def _triples(met: list[Any]) -> list[Seen]:
    """The kept sightings of a record kind's flat list, oldest first."""
    return list(zip(met[1::3], met[2::3], met[3::3], strict=True))


def _insert(met: list[Any], sighting: Seen) -> None:
    """Put an older sighting in its place among the kept ones (records out of time order)."""
    kept = sorted([*_triples(met), sighting], key=_time)
    met[1:] = [value for seen in kept for value in seen]


def _at(sighting: Sighting) -> int:
    return sighting.at


def _time(sighting: Seen) -> float:
    """A sighting's record time (what is raw in it is never compared)."""
    return sighting[0]


class Sightings:
    """One run's sightings, by the entries of a record, until they are flushed."""

    def __init__(self, book: ProvenanceBook, key: MessageKey, sources: Sequence[str]) -> None:
        self.book = book
        self._key = key
        self._host_source = "url_domains" if "url_domains" in sources else "malicious_urls"
        #: a record's entries -> [records that produced them, then the newest few sightings'
        #: time, verdict and message id, oldest first] (flat: see _FULL).
        self._met: dict[tuple[str, ...], list[Any]] = {}
        #: entries never pushed (unblocked, removed by hand): their sightings are not kept.
        self._dropped: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._met)

    def add(self, entries: Sequence[str], when: float, evidence: Evidence, record: object) -> bool:
        """One record that produced ``entries`` at ``when``; ``evidence`` reads its verdict and
        message id, and only when the sighting is among the newest kept. True when no record
        met before produced these entries together."""
        group = tuple(entries)  # the extractor's own tuple, as it is: no copy
        met = self._met.get(group)
        if met is None:
            verdict, message = evidence(record)
            self._met[group] = [1, when, verdict, message]
            return True
        met[0] += 1
        if len(met) == _FULL and when <= met[1]:
            return False  # older than every sighting kept: only counted
        verdict, message = evidence(record)
        if when >= met[-3]:  # records mostly come in time order: the newest goes last
            met += (when, verdict, message)
        else:
            _insert(met, (when, verdict, message))
        if len(met) > _FULL:
            del met[1:4]
        return False

    def newest(self) -> dict[str, float]:
        """Each entry met (dropped ones too) with the time of the newest record that produced
        it: the newest kept sighting of each record kind is that kind's newest record."""
        times: dict[str, float] = {}
        for group, met in self._met.items():
            when = met[-3]
            for entry in group:
                if times.get(entry, -1.0) < when:
                    times[entry] = when
        return times

    def drop(self, entry: str) -> None:
        """Forget an entry that is not pushed (unblocked, removed by hand)."""
        self._dropped.add(entry)

    def _source(self, entry: str) -> str:
        if entry.startswith("."):
            return "malicious_domains"
        return "malicious_urls" if "/" in entry else self._host_source

    def flush(self, known: Collection[str]) -> None:
        """Merge what was met into the provenance (``known``: the entries the category
        holds), then forget it. The kept sightings are cleaned, hashed and encoded once per
        record kind, not once per entry."""
        merged: dict[str, str] = {}
        written: dict[str, str] = {}
        for entry, (count, evidence) in self._by_entry().items():
            new = facts(self._source(entry), count, evidence)
            (merged if entry in known else written)[entry] = new
        self.book.merge(merged)
        self.book.write_new(written)
        self.clear()

    def _by_entry(self) -> dict[str, tuple[int, str]]:
        """Per entry: how many records produced it, and its newest sightings encoded (once per
        record kind, unless records of several kinds produced the entry)."""
        spread: dict[str, list[Any]] = {}
        dropped = self._dropped
        keep = _Keeper(self._key)
        for group, met in self._met.items():
            count, kept = met[0], _triples(met)
            evidence = keep(kept)
            encoded = evidence_json(evidence)
            for entry in group:
                if entry in dropped:
                    continue
                slot = spread.get(entry)
                if slot is None:
                    spread[entry] = [count, evidence, encoded]
                else:  # one entry from records of several kinds (a host, from many URLs)
                    slot[0] += count
                    slot[1] = sorted((*slot[1], *evidence), key=_at, reverse=True)[:KEEP]
                    slot[2] = None
        return {
            e: (count, encoded if encoded is not None else evidence_json(evidence))
            for e, (count, evidence, encoded) in spread.items()
        }

    def clear(self) -> None:
        self._met.clear()
        self._dropped.clear()
