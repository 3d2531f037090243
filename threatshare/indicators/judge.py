"""Whether one entry may be pushed, under the rules of what is never blocked
(docs/design.md#what-is-never-blocked), judged from the flags of its host.

A :class:`Judge` holds one instance's zones (its allow list and the rules' lists, see
:mod:`threatshare.indicators.zones`) and caches each host's flags: one walk up its labels, a
suffix look-up and ZIA's format rules for the host, done once per host. Every judgement of an
entry on that host then starts from those flags.

Most hosts are on no list at all, and such a host's entries need only ZIA's format rules:
:meth:`Judge.url` takes that short way when none of the flags in :data:`JUDGED` is set, and
checks a URL entry past its (already valid) host only (:func:`~threatshare.indicators.grammar.
is_valid_entry_on`). The general way gives the same outcomes for such a host; the tests hold
the two to it (tests/indicators/test_fast_paths.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from threatshare.indicators.cache import ByteBoundedCache
from threatshare.indicators.grammar import is_valid_entry, is_valid_entry_on, is_valid_host
from threatshare.indicators.normalise import UrlParts
from threatshare.indicators.rules import Rules, Wrapper
from threatshare.indicators.zones import (
    ALLOWED,
    COVERS,
    ENDPOINT,
    INVALID_HOST,
    IP,
    PROTECTED,
    SUFFIX,
    WRAPPER,
    build_zones,
    is_ip,
    zone_flags,
    zones_of,
)

__all__ = ["JUDGED", "Decision", "Judge"]

Decision = tuple[Literal["accept", "skip", "reject"], str]

#: The flags that can change a URL's outcomes; a host with none of them (most hosts) is judged
#: by ZIA's format rules alone. COVERS only matters to wildcards, IP to the flags' own walk.
JUDGED = ALLOWED | PROTECTED | SUFFIX | WRAPPER | INVALID_HOST | ENDPOINT


class Judge:
    """The rules of what is never blocked for one instance, applied entry by entry.

    ``want_urls`` and ``want_hosts``: the instance's ``malicious_urls`` and ``url_domains``
    sources, which decide the outcomes :meth:`url` gives for a URL.
    """

    def __init__(
        self, rules: Rules, allowed: Iterable[str], want_urls: bool, want_hosts: bool
    ) -> None:
        self.rules = rules
        self._want_urls = want_urls
        self._want_hosts = want_hosts
        self._zones = build_zones(rules, allowed)
        self._at_or_above_suffix = rules.suffixes.at_or_above
        # Bound to the instance (not a module-level cache) because the lists differ per instance.
        self._host_cache = ByteBoundedCache(self._flags_of, None)  # flags: a small int
        #: host -> flags, read directly by callers for a hit; :attr:`missed` on a miss.
        self.known_hosts = self._host_cache.items
        self.missed_host = self._host_cache.missed

    def host_flags(self, host: str) -> int:
        """The flags of every list ``host`` is on or under, and of what it is (see zones)."""
        flags = self.known_hosts.get(host)
        return self.missed_host(host) if flags is None else flags

    def url(self, parts: UrlParts, flags: int) -> tuple[Decision, ...]:
        """The outcomes of a URL (not a wrapped link) for the sources wanted, each reason once;
        ``flags`` are its host's."""
        host, entry, problem, has_path, _, _ = parts
        if not flags & JUDGED:
            # On no list, not a suffix, valid (INVALID_HOST is judged): the host is accepted,
            # and the URL entry built on it needs ZIA's rules only past the host.
            host_outcome: Decision = ("accept", host)
            if not self._want_urls or entry == host:
                return (host_outcome,)
            if entry is None:
                url_outcome: Decision = ("reject", problem or "invalid")
            elif is_valid_entry_on(host, entry):
                url_outcome = ("accept", entry)
            else:
                url_outcome = ("reject", "invalid_entry")
            return (url_outcome, host_outcome) if self._want_hosts else (url_outcome,)
        host_outcome = self.host_level(host, host, flags)
        if not self._want_urls:
            return (host_outcome,)
        if entry is None:
            url_outcome = ("reject", problem or "invalid")
        elif entry == host:
            url_outcome = host_outcome
        elif not has_path:
            url_outcome = self.host_level(entry, host, flags)
        else:
            url_outcome = self.path(parts, flags)
        if not self._want_hosts or url_outcome == host_outcome:
            return (url_outcome,)
        return (url_outcome, host_outcome)

    def host_level(self, entry: str, host: str, flags: int | None = None) -> Decision:
        """A host-level entry (``host`` or ``host:port``): it blocks the whole host."""
        if flags is None:
            flags = self.host_flags(host)
        if flags & (ALLOWED | PROTECTED | SUFFIX | WRAPPER | INVALID_HOST):
            if flags & ALLOWED:
                return ("skip", "allowed")
            if flags & SUFFIX:
                return ("skip", "public_suffix")
            if flags & PROTECTED:
                return ("skip", "protected_host")
            if flags & WRAPPER:
                return ("skip", "wrapper")  # the wrapper's host carries everyone's links
        return _valid(entry, host, flags)

    def wildcard(self, entry: str, domain: str) -> Decision:
        """A ``.domain`` entry: it blocks the domain and every host under it."""
        flags = self.host_flags(domain)
        outcome = self.host_level(entry, domain, flags)
        if outcome[0] == "accept" and flags & COVERS:
            return ("skip", "covers_allowed")
        return outcome

    def path(self, parts: UrlParts, flags: int) -> Decision:
        """A path entry: it blocks that path and what is under it, on one host."""
        entry = parts.entry
        assert entry is not None
        if flags & (ALLOWED | PROTECTED | ENDPOINT):
            if flags & ALLOWED:
                return ("skip", "allowed")
            if flags & PROTECTED and parts.query:
                # The query made the URL specific; without it the entry is the platform's.
                return ("skip", "protected_query")
            if flags & ENDPOINT and self._at_endpoint(parts.host, parts.path):
                return ("skip", "protected_endpoint")
        return _valid(entry, parts.host, flags)

    def withdrawn(self, entry: str) -> str | None:
        """Why an entry pushed earlier would not be pushed by today's rules (a skip reason),
        or None; see :meth:`threatshare.indicators.extract.Extractor.withdrawn`."""
        if entry.startswith("."):
            domain = entry[1:]
            kind, detail = self.wildcard(entry, domain)
            return detail if kind == "skip" else None
        authority, slash, path = entry.partition("/")
        host = authority
        if not is_ip(host) or host.count(":") == 1:
            host = authority.rpartition(":")[0] or authority  # drop a port
        if not slash:
            kind, detail = self.host_level(entry, host)
            return detail if kind == "skip" else None
        flags = self.host_flags(host)
        if flags & WRAPPER and self.wrapper_of(host, "/" + path) is not None:
            return "wrapper"
        if is_ip(host) and path.isdigit():
            return "ip_range"  # "/8" after an address reads as a range: the host stands alone
        parts = UrlParts(host, entry, None, True, "/" + path, "")
        kind, detail = self.path(parts, flags)
        return detail if kind == "skip" else None

    def wrapper_of(self, host: str, path: str) -> Wrapper | None:
        """The wrapper family a link on ``host`` (flagged WRAPPER) with ``path`` belongs to."""
        for zone in zones_of(host, self._zones, WRAPPER):
            wrapper = self.rules.wrapper_for(host, zone, path)
            if wrapper is not None:
                return wrapper
        return None

    def _at_endpoint(self, host: str, path: str) -> bool:
        segments = [s for s in path.lower().split("/") if s]
        for zone in zones_of(host, self._zones, ENDPOINT):
            for endpoint in self.rules.endpoints.get(zone, ()):
                if endpoint.touches(segments):
                    return True
        return False

    def _flags_of(self, host: str) -> int:
        flags = zone_flags(host, self._zones)
        if not flags & IP and self._at_or_above_suffix(host):
            flags |= SUFFIX
        return flags if is_valid_host(host) else flags | INVALID_HOST


def _valid(entry: str, host: str, flags: int) -> Decision:
    # The last guard: a gap in the shaping must never reach ZIA, which refuses the whole
    # request for one invalid entry. A host's own validity is part of its cached flags, so an
    # entry on a valid host is checked past the host only.
    if entry == host:
        valid = not flags & INVALID_HOST
    elif flags & INVALID_HOST:
        valid = is_valid_entry(entry)
    else:
        valid = is_valid_entry_on(host, entry)
    return ("accept", entry) if valid else ("reject", "invalid_entry")
