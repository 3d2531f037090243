"""The sightings a run meets, kept for the provenance of its entries
(docs/design.md#provenance-and-audit).

Per entry: how many records produced it in this run and the newest few of them (record time,
verdict, message id as Mimecast sent them). Only those few are cleaned and hashed, at
:meth:`Sightings.flush`, which merges them into the entries' provenance in Redis: an entry of
the category has a provenance to merge with; one met for the first time has none yet, and is
written without a read (most of a backlog's entries).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from threatshare.indicators.evidence import cleaned
from threatshare.state.provenance import KEEP, MessageKey, ProvenanceBook, Sighting


def _newest(sighting: tuple[float, object, object]) -> float:
    """A sighting's record time (what is raw in it is never compared)."""
    return sighting[0]


class Sightings:
    """One run's sightings, by entry, until they are flushed."""

    def __init__(self, book: ProvenanceBook, key: MessageKey, sources: Sequence[str]) -> None:
        self._book = book
        self._key = key
        self._host_source = "url_domains" if "url_domains" in sources else "malicious_urls"
        #: entry -> [sightings met, the newest few (record time, verdict, message)].
        self._met: dict[str, list[Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._met)

    def add(self, entry: str, when: float, verdict: object, message: object) -> None:
        met = self._met.get(entry)
        if met is None:
            self._met[entry] = [1, [(when, verdict, message)]]
            return
        met[0] += 1
        kept = met[1]
        kept.append((when, verdict, message))
        if len(kept) > 2 * KEEP:  # only the newest few are ever kept
            kept.sort(key=_newest, reverse=True)
            del kept[KEEP:]

    def drop(self, entry: str) -> None:
        """Forget an entry that is not pushed (unblocked, removed by hand)."""
        self._met.pop(entry, None)

    def _source(self, entry: str) -> str:
        if entry.startswith("."):
            return "malicious_domains"
        return "malicious_urls" if "/" in entry else self._host_source

    def flush(self, known: Collection[str]) -> None:
        """Merge what was met into the provenance (``known``: the entries the category
        holds), then forget it."""
        key = self._key
        kept = {
            e: [
                Sighting(int(t), verdict, key(message))
                for t, v, m in sorted(seen, key=_newest, reverse=True)[:KEEP]
                for verdict, message in (cleaned(v, m),)
            ]
            for e, (_, seen) in self._met.items()
        }
        counts = {e: count for e, (count, _) in self._met.items()}
        sources = {e: self._source(e) for e in self._met}
        self._book.record({e: s for e, s in kept.items() if e in known}, sources, counts)
        self._book.first({e: s for e, s in kept.items() if e not in known}, sources, counts)
        self._met.clear()

    def clear(self) -> None:
        self._met.clear()
