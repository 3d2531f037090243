"""From Mimecast records to the entries an instance pushes to its ZIA category
(docs/design.md#entries).

An :class:`Extractor` holds one instance's choices (sources, allow list, protected hosts) and
turns each record into entries, counting every outcome in a :class:`Tally`:

- accepted: an entry to push, returned (shaped by :mod:`threatshare.indicators.normalise`);
- skipped: fine but never pushed: a non-global IP literal, a host on or under the allow
  list, Mimecast's own link rewriter, a host-level entry for a protected shared platform, an
  impersonation hit without a domain-type identifier;
- rejected: cannot be made into a valid entry, or the record itself is malformed.

Within one record, identical outcomes count once: ``https://evil.example/`` gives the same
entry for ``malicious_urls`` and ``url_domains``, and one reason for a URL skipped as a whole.
Decisions are cached per URL and per host, because Mimecast repeats the same URLs across
clicks and recipients.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

from threatshare.indicators.normalise import (
    Rejected,
    Skipped,
    is_valid_entry,
    normalise_host,
    split_url,
)

#: Impersonation identifiers that judge the sender's domain (the only ones that make it an
#: indicator). Name-type identifiers (``internal_user_name``, ``custom_name_list``,
#: ``reply_address_mismatch``, ``targeted_threat_dictionary``) judge a display name or the
#: content, and the sender domain is then often an innocent freemail provider.
DOMAIN_IDENTIFIERS = frozenset(
    {
        "similar_internal_domain",
        "custom_external_domain",
        "mimecast_external_domain",
        "advanced_similar_internal_domain",
        "advanced_custom_external_domain",
        "advanced_mimecast_external_domain",
        "newly_observed_domain",
    }
)

# Mimecast's link rewriters. The logs carry the original URL; blocking a rewriter host would
# break every protected link in every mailbox. Zones: the host and everything under it.
# Regional domains: a host whose label right under the domain starts with "protect"
# (protect-eu.mimecast.com, protect2.mimecast.com, protect-je.mimecast-offshore.com …).
_REWRITER_ZONES = ("mimecastprotect.com",)
_REWRITER_DOMAINS = ("mimecast.com", "mimecast-offshore.com", "mimecast-pscom-us.com")

# What a host is on or under, as bit flags, so that one walk up its labels answers every list.
_REWRITER = 1
_REWRITER_PARENT = 2  # a child label starting with "protect" is a rewriter
_ALLOWED = 4
_PROTECTED = 8
_INVALID_HOST = 16  # not a list: the host fails is_valid_entry

_CACHE_SIZE = 1 << 15

Decision = tuple[Literal["accept", "skip", "reject"], str]


@dataclasses.dataclass
class Tally:
    """The counters of one run: records pulled, skips and rejections by reason."""

    pulled: int = 0
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally, reason by reason."""
        self.pulled += other.pulled
        self.skipped.update(other.skipped)
        self.rejected.update(other.rejected)


class Extractor:
    """Turns one instance's Mimecast records into ZIA entries, per its sources and lists.

    ``sources``: any of ``malicious_urls``, ``url_domains``, ``malicious_domains``.
    ``allow``: hosts never pushed, nor anything under them, at every level.
    ``extra_protected``: more hosts for which no host-level entry is pushed
    (docs/design.md#what-is-never-blocked), added to
    :func:`builtin_protected_hosts`.
    """

    def __init__(
        self,
        sources: Sequence[str],
        allow: Sequence[str] = (),
        extra_protected: Sequence[str] = (),
    ) -> None:
        self._want_urls = "malicious_urls" in sources
        self._want_url_hosts = "url_domains" in sources
        self._want_senders = "malicious_domains" in sources
        zones = _rewriter_zones()
        for host in builtin_protected_hosts() | _host_keys(extra_protected):
            zones[host] = zones.get(host, 0) | _PROTECTED
        for host in _host_keys(allow):
            zones[host] = zones.get(host, 0) | _ALLOWED
        self._zones = zones
        # Bound to the instance (not a module-level cache) because the lists differ per instance.
        self._url_outcomes = lru_cache(maxsize=_CACHE_SIZE)(self._decide_url)
        self._sender_outcome = lru_cache(maxsize=_CACHE_SIZE)(self._decide_sender)
        self._host_flags = lru_cache(maxsize=_CACHE_SIZE)(self._flags_of)

    def url_record(self, record: object, tally: Tally) -> list[str]:
        """Entries for ``malicious_urls`` and/or ``url_domains`` from one URL-log record."""
        tally.pulled += 1
        url = record.get("url") if isinstance(record, dict) else None
        if not isinstance(url, str):
            tally.reject("malformed_record")
            return []
        assert isinstance(record, dict)
        scan = record.get("scanResult")
        if isinstance(scan, str) and scan.lower() != "malicious":
            tally.skip("not_malicious")  # the query asks for malicious only; a guard
            return []
        if not (self._want_urls or self._want_url_hosts):
            return []
        return _apply(self._url_outcomes(url), tally)

    def impersonation_record(self, record: object, tally: Tally) -> list[str]:
        """The ``.domain`` entry for ``malicious_domains`` from one impersonation-log record."""
        tally.pulled += 1
        sender = record.get("senderAddress") if isinstance(record, dict) else None
        if not isinstance(sender, str):
            tally.reject("malformed_record")
            return []
        assert isinstance(record, dict)
        if record.get("taggedMalicious") is False:
            tally.skip("not_malicious")  # the query asks for tagged ones only; a guard
            return []
        if not self._want_senders:
            return []
        if not _has_domain_identifier(record):
            tally.skip("no_domain_identifier")
            return []
        return _apply((self._sender_outcome(sender),), tally)

    # --- decisions (cached) --------------------------------------------------------------

    def withdrawn(self, entry: str) -> str | None:
        """Why an entry pushed earlier must now leave the category (the allow list or the
        protected hosts grew since), as a skip reason; None when it may stay."""
        host_level = "/" not in entry
        host = entry.lstrip(".").split("/", 1)[0]
        if not _is_ip(host):
            host = host.rpartition(":")[0] or host  # drop a port
        kind, detail = self._judge(entry, host, host_level)
        return detail if kind == "skip" else None

    def _decide_url(self, url: str) -> tuple[Decision, ...]:
        try:
            parts = split_url(url)
        except Skipped as skipped:
            return (("skip", skipped.reason),)
        except Rejected as rejected:
            return (("reject", rejected.reason),)
        host_outcome = self._judge(parts.host, parts.host, True)
        if not self._want_urls:
            return (host_outcome,)
        if parts.entry is None:
            url_outcome: Decision = ("reject", parts.problem or "invalid")
        elif parts.entry == parts.host:
            url_outcome = host_outcome
        else:
            url_outcome = self._judge(parts.entry, parts.host, not parts.has_path)
        if not self._want_url_hosts or url_outcome == host_outcome:
            return (url_outcome,)
        return (url_outcome, host_outcome)

    def _decide_sender(self, sender: str) -> Decision:
        local, at, domain = sender.strip().rstrip(">").rpartition("@")
        if not at or not local:
            return ("reject", "bad_sender_address")
        try:
            host = normalise_host(domain)
        except Skipped as skipped:
            return ("skip", skipped.reason)
        except Rejected as rejected:
            return ("reject", rejected.reason)
        # ".x" covers the domain and its subdomains; an IP literal has none, so it stays bare.
        entry = host if _is_ip(host) else "." + host
        return self._judge(entry, host, True)

    def _judge(self, entry: str, host: str, host_level: bool) -> Decision:
        flags = self._host_flags(host)
        if flags & _REWRITER:
            return ("skip", "mimecast_rewriter")
        if flags & _ALLOWED:
            return ("skip", "allowed")
        if host_level and flags & _PROTECTED:
            return ("skip", "protected_host")
        # The last guard: a gap in the shaping must never reach ZIA, which refuses the whole
        # request for one invalid entry. A host's own validity is part of its cached flags.
        valid = not flags & _INVALID_HOST if entry == host else is_valid_entry(entry)
        if not valid:
            return ("reject", "invalid_entry")
        return ("accept", entry)

    def _flags_of(self, host: str) -> int:
        flags = _zone_flags(host, self._zones)
        return flags if is_valid_entry(host) else flags | _INVALID_HOST


def is_mimecast_rewriter(host: str) -> bool:
    """Whether ``host`` (shaped: lower case, ASCII) is one of Mimecast's link-rewriting hosts."""
    return bool(_zone_flags(host, _rewriter_zones()) & _REWRITER)


@cache
def builtin_protected_hosts() -> frozenset[str]:
    """The protected hosts shipped in ``threatshare/indicators/data/protected_hosts.txt``."""
    text = (
        resources.files("threatshare.indicators")
        .joinpath("data/protected_hosts.txt")
        .read_text("utf-8")
    )
    return _host_keys(line.partition("#")[0] for line in text.splitlines())


# --- helpers ---------------------------------------------------------------------------------


def _apply(outcomes: tuple[Decision, ...], tally: Tally) -> list[str]:
    entries: list[str] = []
    for kind, value in outcomes:
        if kind == "accept":
            entries.append(value)
        elif kind == "skip":
            tally.skip(value)
        else:
            tally.reject(value)
    return entries


def _has_domain_identifier(record: dict[str, object]) -> bool:
    identifiers = record.get("identifiers")
    if isinstance(identifiers, list):
        for name in identifiers:
            if isinstance(name, str) and name.lower() in DOMAIN_IDENTIFIERS:
                return True
    results = record.get("impersonationResults")
    if isinstance(results, list):
        for result in results:
            source = result.get("impersonationDomainSource") if isinstance(result, dict) else None
            if isinstance(source, str) and source.lower() in DOMAIN_IDENTIFIERS:
                return True
    return False


def _host_keys(values: Iterable[str]) -> frozenset[str]:
    """Hosts of a configured list, in the form the shaped entries use (IDNA, lower case)."""
    keys = set()
    for value in values:
        # "*.x" and ".x" mean "x and below", which is what every list here means anyway.
        text = value.strip().lower().lstrip("*").lstrip(".")
        if not text:
            continue
        try:
            keys.add(normalise_host(text))
        except (Rejected, Skipped):
            keys.add(text.rstrip("."))  # e.g. a private address: kept as written
    return frozenset(keys)


def _is_ip(host: str) -> bool:
    return ":" in host or host.rpartition(".")[2].isdigit()


def _rewriter_zones() -> dict[str, int]:
    zones = dict.fromkeys(_REWRITER_ZONES, _REWRITER)
    zones.update(dict.fromkeys(_REWRITER_DOMAINS, _REWRITER_PARENT))
    return zones


def _zone_flags(host: str, zones: dict[str, int]) -> int:
    """The flags of every zone ``host`` is on or under (IP literals: exact match only)."""
    flags = zones.get(host, 0)
    if _is_ip(host):
        return flags & ~_REWRITER_PARENT
    dot = host.find(".")
    while dot >= 0:
        found = zones.get(host[dot + 1 :])
        if found:
            if found & _REWRITER_PARENT and host[:dot].rpartition(".")[2].startswith("protect"):
                found |= _REWRITER
            flags |= found
        dot = host.find(".", dot + 1)
    return flags
