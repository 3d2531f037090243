"""What a Mimecast record says about the threat it reports, kept as an entry's provenance
(docs/design.md#provenance-and-audit): the verdict and the message it came in.

Only these two facts are read. Reading them is on the hot path of every record, so it only
picks them out; :func:`cleaned` makes them fit to keep (untrusted text: control characters
removed, cut short) for the few sightings an entry keeps. The message id is kept only as a keyed
hash (:class:`threatshare.state.provenance.MessageKey`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from threatshare.indicators.extract import DOMAIN_IDENTIFIERS
from threatshare.scrub import clean_line

#: Longest verdict kept: Mimecast's categories are a few words.
MAX_VERDICT = 80
#: Longest message id hashed (an id is a few dozen characters; anything longer is cut).
MAX_MESSAGE_ID = 512


def url_evidence(record: object) -> tuple[object, object]:
    """(verdict, message id) of a URL-log record, as sent: its ``category``, else its scan
    result. Pass them through :func:`cleaned` before keeping them."""
    if not isinstance(record, dict):
        return "", ""
    return record.get("category") or record.get("scanResult") or "", record.get("messageId")


def impersonation_evidence(record: object) -> tuple[object, object]:
    """(verdict, message id) of an impersonation record: the domain-type identifiers that
    fired, in Mimecast's own words; those of its detailed results when its list names none."""
    if not isinstance(record, dict):
        return "", ""
    listed = _identifiers(record.get("identifiers"))
    verdict = _verdict(listed)
    if not verdict:
        results = record.get("impersonationResults")
        if isinstance(results, list):
            sources = [r.get("impersonationDomainSource") for r in results if isinstance(r, dict)]
            verdict = _verdict(listed + _identifiers(sources))
    return verdict, record.get("messageId")


def _verdict(fired: list[str]) -> str:
    if sum(map(len, fired)) > MAX_VERDICT * 4:  # not Mimecast's words: not worth a cache slot
        return _verdict_of.__wrapped__(tuple(fired))
    return _verdict_of(tuple(fired))


@functools.lru_cache(maxsize=256)
def _verdict_of(fired: tuple[str, ...]) -> str:
    """The verdict a set of identifiers makes: a few combinations repeat across every record."""
    return ",".join(sorted(set(fired) & DOMAIN_IDENTIFIERS))


def cleaned(verdict: object, message_id: object) -> tuple[str, str]:
    """A sighting's verdict and message id made fit to keep (untrusted text)."""
    return _text(verdict, MAX_VERDICT), _text(message_id, MAX_MESSAGE_ID)


def _identifiers(values: object) -> list[str]:
    if type(values) is list and all(type(v) is str for v in values):
        return values  # as Mimecast sends them
    if not isinstance(values, Sequence) or isinstance(values, str):
        return []
    return [v for v in values if isinstance(v, str)]


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str) or not value:
        return ""
    if (
        len(value) <= limit
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
    ):
        return value  # the usual case: nothing to clean, no regex to run
    return clean_line(value, limit)
