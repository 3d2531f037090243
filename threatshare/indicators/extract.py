"""From Mimecast records to the entries an instance pushes to its ZIA category
(docs/design.md#entries).

An :class:`Extractor` holds one instance's choices (sources, allow list) and the rules of what
is never blocked (:class:`~threatshare.indicators.rules.Rules`, see
docs/design.md#what-is-never-blocked), and turns each record into entries, counting every
outcome in a :class:`Tally`:

- accepted: an entry to push, returned (shaped by :mod:`threatshare.indicators.normalise`);
- skipped: fine but never pushed, with its reason: a policy verdict (``policy_verdict``), a link
  wrapper (``wrapper``, its target judged in its place), a public suffix or above
  (``public_suffix``), a host on or under the allow list (``allowed``), a host-level entry
  for a protected platform (``protected_host``), a path entry there from a URL with a query
  (``protected_query``) or at a shared endpoint (``protected_endpoint``), a wildcard over an
  allowed or protected host (``covers_allowed``), a non-global IP literal, an impersonation
  hit without a domain-type identifier;
- rejected: cannot be made into a valid entry, or the record itself is malformed.

Within one record, identical outcomes count once: ``https://evil.example/`` gives the same
entry for ``malicious_urls`` and ``url_domains``, and one reason for a URL skipped as a whole.
Decisions are cached per URL, per sender and per host in caches bounded by bytes
(:mod:`threatshare.indicators.cache`), because Mimecast repeats the same URLs across clicks
and recipients. Cheap checks come first: a host's flags are one walk up its labels, cached.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from threatshare.indicators.cache import DEFAULT_BUDGET, ByteBoundedCache
from threatshare.indicators.judge import Decision, Judge
from threatshare.indicators.normalise import Rejected, Skipped, normalise_host, split_url
from threatshare.indicators.rules import Rules, host_keys, shipped_data, verdict_key
from threatshare.indicators.zones import WRAPPER, is_ip

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

#: What one URL or sender gives every record of it: its entries (one tuple, shared by those
#: records) and the skips and rejections each of them counts.
Result = tuple[tuple[str, ...], tuple[Decision, ...]]

#: Bytes the URL decisions may hold: about 65,000 URLs of the usual length (some 500 bytes each),
#: so a window with tens of thousands of distinct URLs decides each once. Twice the other
#: caches' budget: URLs are what Mimecast repeats most, and a decision is the costliest to redo.
URL_BUDGET = 2 * DEFAULT_BUDGET

#: How many wrappers deep a target is still looked for.
MAX_WRAPPING = 3


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
    ``allow``: hosts never pushed, nor anything under them, at every level (a host, a URL or an
    entry as ZIA shows it).
    ``rules``: what is never blocked (shipped data and configuration); by default the shipped
    data, with ``extra_protected`` added to its protected hosts.
    """

    def __init__(
        self,
        sources: Sequence[str],
        allow: Sequence[str] = (),
        extra_protected: Sequence[str] = (),
        rules: Rules | None = None,
    ) -> None:
        self._want_urls = "malicious_urls" in sources
        self._want_url_hosts = "url_domains" in sources
        self._want_senders = "malicious_domains" in sources
        self.rules = rules = rules or Rules(protected_hosts=extra_protected)
        self._judge = judge = Judge(rules, host_keys(allow), self._want_urls, self._want_url_hosts)
        self._verdicts = rules.verdicts
        self._verdict_memo: dict[str, bool] = {}
        # Bound to the instance (not module-level caches) because the lists differ per instance.
        self._url_results = ByteBoundedCache(self._url_result, _result_size, URL_BUDGET)
        self._url_known, self._url_missed = self._url_results.items, self._url_results.missed
        self._sender_results = ByteBoundedCache(self._sender_result, _result_size)
        self._sender_known = self._sender_results.items
        # The judge's methods, bound once: a first-time URL calls them on every record.
        self._known_hosts, self._missed_host = judge.known_hosts, judge.missed_host
        self._judge_url = judge.url

    def url_record(self, record: object, tally: Tally) -> tuple[str, ...]:
        """Entries for ``malicious_urls`` and/or ``url_domains`` from one URL-log record."""
        tally.pulled += 1
        if not isinstance(record, dict) or not isinstance(url := record.get("url"), str):
            tally.reject("malformed_record")
            return ()
        scan = record.get("scanResult")
        # As Mimecast writes it, or in another case: only a string that is not "malicious".
        if scan != "malicious" and isinstance(scan, str) and scan.lower() != "malicious":
            tally.skip("not_malicious")  # the query asks for malicious only; a guard
            return ()
        if not (self._want_urls or self._want_url_hosts):
            return ()
        if self._verdicts and self._is_policy_verdict(record):
            tally.skip("policy_verdict")
            return ()
        result = self._url_known.get(url)
        if result is None:
            result = self._url_missed(url)
        entries, notes = result
        if notes:
            _count(notes, tally)
        return entries

    def impersonation_record(self, record: object, tally: Tally) -> tuple[str, ...]:
        """The ``.domain`` entry for ``malicious_domains`` from one impersonation-log record."""
        tally.pulled += 1
        sender = record.get("senderAddress") if isinstance(record, dict) else None
        if not isinstance(sender, str):
            tally.reject("malformed_record")
            return ()
        assert isinstance(record, dict)
        if record.get("taggedMalicious") is False:
            tally.skip("not_malicious")  # the query asks for tagged ones only; a guard
            return ()
        if not self._want_senders:
            return ()
        if not _has_domain_identifier(record):
            tally.skip("no_domain_identifier")
            return ()
        result = self._sender_known.get(sender)
        if result is None:
            result = self._sender_results.missed(sender)
        entries, notes = result
        if notes:
            _count(notes, tally)
        return entries

    def withdrawn(self, entry: str) -> str | None:
        """Why an entry pushed earlier would not be pushed by today's rules, as a skip reason;
        None when it may stay. Judged from the entry alone: what only a record told (its
        query, its verdict) is not known here."""
        return self._judge.withdrawn(entry)

    # --- decisions (cached) --------------------------------------------------------------

    def _is_policy_verdict(self, record: dict[str, object]) -> bool:
        memo = self._verdict_memo
        category = record.get("category")
        if category is not None:
            known = memo.get(category) if isinstance(category, str) else False
            if known or (known is None and self._verdict_name(category)):
                return True
        tags = record.get("tagMap")
        if tags:
            if not isinstance(tags, dict):
                return False
            for name in tags:
                known = memo.get(name)
                if known or (known is None and self._verdict_name(name)):
                    return True
        return False

    def _verdict_name(self, name: object) -> bool:
        known = isinstance(name, str) and verdict_key(name) in self._verdicts
        if isinstance(name, str) and len(self._verdict_memo) < 4096 and len(name) <= 256:
            self._verdict_memo[name] = known  # a few names repeat across every record
        return known

    def _url_result(self, url: str) -> Result:
        return _result(self._decide_url(url))

    def _sender_result(self, sender: str) -> Result:
        return _result((self._decide_sender(sender),))

    def _decide_url(self, url: str) -> tuple[Decision, ...]:
        wrapped: tuple[Decision, ...] = ()
        for depth in range(MAX_WRAPPING + 1):
            try:
                parts = split_url(url)
            except Skipped as skipped:
                return (*wrapped, ("skip", skipped.reason))
            except Rejected as rejected:
                return (*wrapped, ("reject", rejected.reason))
            flags = self._known_hosts.get(parts.host)
            if flags is None:
                flags = self._missed_host(parts.host)
            wrapper = self._judge.wrapper_of(parts.host, parts.path) if flags & WRAPPER else None
            if wrapper is None:
                outcomes = self._judge_url(parts, flags)
                if wrapped:  # one count per reason, as for any record
                    return tuple(dict.fromkeys((*wrapped, *outcomes)))
                return outcomes
            wrapped = (("skip", "wrapper"),)
            target = wrapper.decode(parts.path, parts.query)
            if target is None or depth == MAX_WRAPPING:
                return wrapped  # nothing to recover, or too deep: no entry
            url = target
        return wrapped  # pragma: no cover - the loop returns

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
        if is_ip(host):
            return self._judge.host_level(host, host)  # an address has no subdomains
        # A look-alike sender stands for the name its owner registered: mail.evil.example
        # gives .evil.example, which also covers the next subdomain they send from.
        registrable = self.rules.suffixes.registrable(host)
        if registrable is None:
            return ("skip", "public_suffix")
        return self._judge.wildcard("." + registrable, registrable)


def builtin_protected_hosts() -> frozenset[str]:
    """The protected hosts shipped in ``threatshare/indicators/data/protected_hosts.txt``."""
    return host_keys(shipped_data()["protected_hosts"].lines)


# --- helpers ---------------------------------------------------------------------------------


def _result(outcomes: tuple[Decision, ...]) -> Result:
    """The outcomes of a URL or sender as a record gives them: its entries, in order, and the
    skips and rejections it counts."""
    entries: list[str] = []
    notes: list[Decision] = []
    for outcome in outcomes:
        if outcome[0] == "accept":
            entries.append(outcome[1])
        else:
            notes.append(outcome)
    return tuple(entries), tuple(notes)


def _count(notes: tuple[Decision, ...], tally: Tally) -> None:
    for kind, value in notes:
        if kind == "skip":
            tally.skip(value)
        else:
            tally.reject(value)


def _result_size(result: Result) -> int:
    entries, notes = result
    size = 0
    for entry in entries:
        size += len(entry) + 64
    for _, value in notes:
        size += len(value) + 64
    return size


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
