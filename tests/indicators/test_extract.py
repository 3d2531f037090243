"""Mimecast records turned into an instance's ZIA entries, with every outcome counted
(docs/design.md#entries)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.indicators.extract import (
    DOMAIN_IDENTIFIERS,
    Extractor,
    Tally,
    builtin_protected_hosts,
)
from threatshare.indicators.grammar import is_valid_entry
from threatshare.indicators.normalise import Rejected, Skipped, normalise_host

BOTH_URL_SOURCES = ("malicious_urls", "url_domains")
ALL_SOURCES = (*BOTH_URL_SOURCES, "malicious_domains")
ALLOW = ("Partner.Example", "*.supplier.example", "bücher.example", "93.184.216.34")


def url(value: object) -> dict[str, Any]:
    return {"url": value, "scanResult": "malicious", "date": "2024-11-14T19:44:02+0000"}


def sender(address: object, *identifiers: str, domain_sources: tuple[str, ...] = ()) -> dict:
    return {
        "senderAddress": address,
        "identifiers": list(identifiers),
        "impersonationResults": [
            {"impersonationDomainSource": source, "checkerResult": "hit"}
            for source in domain_sources
        ],
        "taggedMalicious": True,
    }


# (id, sources, record, entries, skipped by reason, rejected by reason)
# fmt: off
URL_RECORD_CASES: list[tuple[str, tuple[str, ...], object, list[str], dict, dict]] = [
    ("both-sources", BOTH_URL_SOURCES, url("https://Evil.Example/Login?x=1"),
     ["evil.example/login", "evil.example"], {}, {}),
    ("urls-only", ("malicious_urls",), url("https://evil.example/a"), ["evil.example/a"], {}, {}),
    ("domains-only", ("url_domains",), url("https://evil.example/a"), ["evil.example"], {}, {}),
    ("domains-drop-port", ("url_domains",), url("https://evil.example:8443/a"),
     ["evil.example"], {}, {}),
    ("root-url-counted-once", BOTH_URL_SOURCES, url("https://evil.example/"),
     ["evil.example"], {}, {}),
    ("root-url-with-port", BOTH_URL_SOURCES, url("https://h.example:8443/"),
     ["h.example:8443", "h.example"], {}, {}),
    ("ipv6-counted-once", BOTH_URL_SOURCES, url("http://[2606:4700::1111]/dns"),
     ["2606:4700::1111"], {}, {}),
    ("private-ip-skipped-once", BOTH_URL_SOURCES, url("http://10.1.2.3/x"),
     [], {"non_global_address": 1}, {}),
    ("bad-scheme-rejected-once", BOTH_URL_SOURCES, url("ftp://evil.example/x"),
     [], {}, {"unsupported_scheme": 1}),
    ("too-long-keeps-host", BOTH_URL_SOURCES, url("https://evil.example/" + "a" * 1100),
     ["evil.example"], {}, {"too_long": 1}),
    ("too-long-urls-only", ("malicious_urls",), url("https://evil.example/" + "a" * 1100),
     [], {}, {"too_long": 1}),
    ("star-path-keeps-host", BOTH_URL_SOURCES, url("https://evil.example/a*b"),
     ["evil.example"], {}, {"wildcard": 1}),
    # Protected hosts: no host-level entry, path-level entries still pushed.
    ("protected-path-kept", BOTH_URL_SOURCES, url("https://docs.google.com/forms/d/e/x/viewform"),
     ["docs.google.com/forms/d/e/x/viewform"], {"protected_host": 1}, {}),
    ("protected-root-skipped", BOTH_URL_SOURCES, url("https://docs.google.com/?usp=x"),
     [], {"protected_host": 1}, {}),
    ("protected-port-no-path", ("malicious_urls",), url("https://github.com:8443/"),
     [], {"protected_host": 1}, {}),
    ("protected-tenant-subdomain", ("url_domains",), url("https://contoso.sharepoint.com/x"),
     [], {"protected_host": 1}, {}),
    ("protected-tenant-path-kept", ("malicious_urls",),
     url("https://contoso-my.sharepoint.com/:b:/g/personal/x"),
     ["contoso-my.sharepoint.com/:b:/g/personal/x"], {}, {}),
    ("protected-lookalike-not-protected", ("url_domains",), url("https://github.com.evil.example/"),
     ["github.com.evil.example"], {}, {}),
    ("protected-suffix-string-not-protected", ("url_domains",), url("https://notgithub.com/"),
     ["notgithub.com"], {}, {}),
    # Allow list: host and subdomains, at every level.
    ("allow-host", BOTH_URL_SOURCES, url("https://partner.example/x"), [], {"allowed": 1}, {}),
    ("allow-subdomain-path", BOTH_URL_SOURCES, url("https://a.b.partner.example/x/y"),
     [], {"allowed": 1}, {}),
    ("allow-wildcard-form", BOTH_URL_SOURCES, url("https://supplier.example/"),
     [], {"allowed": 1}, {}),
    ("allow-idn", BOTH_URL_SOURCES, url("http://xn--bcher-kva.example/a"), [], {"allowed": 1}, {}),
    ("allow-ip", BOTH_URL_SOURCES, url("http://93.184.216.34/a"), [], {"allowed": 1}, {}),
    ("allow-not-a-string-suffix", ("url_domains",), url("https://evilpartner.example/"),
     ["evilpartner.example"], {}, {}),
    # Mimecast's link rewriters.
    ("rewriter-regional", BOTH_URL_SOURCES, url("https://protect-eu.mimecast.com/s/abc?domain=x"),
     [], {"wrapper": 1}, {}),
    ("rewriter-numbered", BOTH_URL_SOURCES, url("https://protect2.mimecast.com/s/abc"),
     [], {"wrapper": 1}, {}),
    ("rewriter-mimecastprotect", BOTH_URL_SOURCES, url("https://url.uk.m.mimecastprotect.com/s/x"),
     [], {"wrapper": 1}, {}),
    ("rewriter-offshore", BOTH_URL_SOURCES, url("https://protect-je.mimecast-offshore.com/s/x"),
     [], {"wrapper": 1}, {}),
    ("mimecast-site-not-rewriter", ("malicious_urls",), url("https://www.mimecast.com/blog/x"),
     ["www.mimecast.com/blog/x"], {}, {}),
    # Malformed and non-malicious records.
    ("not-a-dict", BOTH_URL_SOURCES, "https://evil.example/", [], {}, {"malformed_record": 1}),
    ("none", BOTH_URL_SOURCES, None, [], {}, {"malformed_record": 1}),
    ("no-url", BOTH_URL_SOURCES, {"date": "x"}, [], {}, {"malformed_record": 1}),
    ("url-not-text", BOTH_URL_SOURCES, url(42), [], {}, {"malformed_record": 1}),
    ("url-empty", BOTH_URL_SOURCES, url("  "), [], {}, {"empty": 1}),
    ("clean-scan-result", BOTH_URL_SOURCES, {"url": "https://evil.example/", "scanResult": "clean"},
     [], {"not_malicious": 1}, {}),
    ("no-scan-result", BOTH_URL_SOURCES, {"url": "https://evil.example/a"},
     ["evil.example/a", "evil.example"], {}, {}),
    ("no-url-source", ("malicious_domains",), url("https://evil.example/a"), [], {}, {}),
]
# fmt: on


@pytest.mark.parametrize(
    ("sources", "record", "entries", "skips", "rejections"),
    [case[1:] for case in URL_RECORD_CASES],
    ids=[case[0] for case in URL_RECORD_CASES],
)
def test_url_record(
    sources: tuple[str, ...], record: object, entries: list[str], skips: dict, rejections: dict
) -> None:
    """A URL-log record gives the entries of the enabled sources; every other outcome is counted."""
    tally = Tally()
    assert list(Extractor(sources, allow=ALLOW).url_record(record, tally)) == entries
    assert tally.pulled == 1
    assert dict(tally.skipped) == skips
    assert dict(tally.rejected) == rejections


# fmt: off
IMPERSONATION_CASES: list[tuple[str, object, list[str], dict, dict]] = [
    ("similar-internal-domain", sender("ceo@Examp1e.COM", "similar_internal_domain"),
     [".examp1e.com"], {}, {}),
    ("advanced-form", sender("ceo@examp1e.com", "advanced_custom_external_domain"),
     [".examp1e.com"], {}, {}),
    ("newly-observed", sender("a@fresh.example", "newly_observed_domain"),
     [".fresh.example"], {}, {}),
    ("identifier-in-results-only", sender("a@look.example", "internal_user_name",
     domain_sources=("mimecast_external_domain",)), [".look.example"], {}, {}),
    ("identifier-upper-case", sender("a@look.example", "SIMILAR_INTERNAL_DOMAIN"),
     [".look.example"], {}, {}),
    ("idn-sender", sender("a@Bücher-Shop.example", "similar_internal_domain"),
     [".xn--bcher-shop-9db.example"], {}, {}),
    ("display-name-form", sender("CEO <ceo@examp1e.com>", "similar_internal_domain"),
     [".examp1e.com"], {}, {}),
    ("ip-sender-stays-bare", sender("a@45.33.32.156", "newly_observed_domain"), ["45.33.32.156"],
     {}, {}),
    ("resolver-sender-protected", sender("a@8.8.8.8", "newly_observed_domain"), [],
     {"protected_host": 1}, {}),
    ("only-name-identifiers", sender("johndoe@gmail.com", "internal_user_name", "custom_name_list",
     domain_sources=("reply_address_mismatch", "targeted_threat_dictionary")),
     [], {"no_domain_identifier": 1}, {}),
    ("no-identifiers", {"senderAddress": "a@x.example"}, [], {"no_domain_identifier": 1}, {}),
    ("identifiers-not-a-list", {"senderAddress": "a@x.example", "identifiers": "x",
     "impersonationResults": ["x", 3]}, [], {"no_domain_identifier": 1}, {}),
    ("sender-allowed", sender("a@mail.partner.example", "similar_internal_domain"),
     [], {"allowed": 1}, {}),
    ("sender-protected", sender("a@docs.google.com", "newly_observed_domain"),
     [], {"protected_host": 1}, {}),
    ("sender-private-ip", sender("a@10.0.0.1", "newly_observed_domain"),
     [], {"non_global_address": 1}, {}),
    ("sender-single-label", sender("a@localhost", "similar_internal_domain"),
     [], {}, {"single_label": 1}),
    ("sender-no-at", sender("nobody", "similar_internal_domain"),
     [], {}, {"bad_sender_address": 1}),
    ("sender-no-local-part", sender("@examp1e.com", "similar_internal_domain"),
     [], {}, {"bad_sender_address": 1}),
    ("sender-star", sender("a@*.examp1e.com", "similar_internal_domain"),
     [], {}, {"wildcard": 1}),
    ("sender-missing", {"identifiers": ["similar_internal_domain"]},
     [], {}, {"malformed_record": 1}),
    ("not-a-dict", ["a@examp1e.com"], [], {}, {"malformed_record": 1}),
    ("not-tagged-malicious", {**sender("a@examp1e.com", "similar_internal_domain"),
     "taggedMalicious": False}, [], {"not_malicious": 1}, {}),
]
# fmt: on


@pytest.mark.parametrize(
    ("record", "entries", "skips", "rejections"),
    [case[1:] for case in IMPERSONATION_CASES],
    ids=[case[0] for case in IMPERSONATION_CASES],
)
def test_impersonation_record(
    record: object, entries: list[str], skips: dict, rejections: dict
) -> None:
    """A look-alike sender gives ``.domain`` only when a domain-type identifier fired."""
    tally = Tally()
    assert list(Extractor(ALL_SOURCES, allow=ALLOW).impersonation_record(record, tally)) == entries
    assert tally.pulled == 1
    assert dict(tally.skipped) == skips
    assert dict(tally.rejected) == rejections


def test_impersonation_without_its_source_gives_nothing() -> None:
    """Without malicious_domains among the sources, an impersonation hit is pulled but not used."""
    tally = Tally()
    record = sender("a@examp1e.com", "similar_internal_domain")
    assert Extractor(BOTH_URL_SOURCES).impersonation_record(record, tally) == ()
    assert (tally.pulled, sum(tally.skipped.values())) == (1, 0)


def test_extra_protected_hosts_from_config() -> None:
    """Hosts added in configuration are protected like the built-in ones, subdomains included."""
    extractor = Extractor(BOTH_URL_SOURCES, extra_protected=["Files.Corp-Share.example."])
    tally = Tally()
    entries = extractor.url_record(url("https://eu.files.corp-share.example/d/1"), tally)
    assert entries == ("eu.files.corp-share.example/d/1",)
    assert tally.skipped == {"protected_host": 1}
    assert Extractor(BOTH_URL_SOURCES).url_record(url("https://files.corp-share.example/"), tally)


def test_repeated_records_count_every_time() -> None:
    """A URL seen again (a cached decision) is counted again, with the same entries."""
    extractor = Extractor(BOTH_URL_SOURCES, allow=ALLOW)
    tally = Tally()
    records = [url("https://evil.example/a"), url("https://partner.example/"), url("ftp://x.y/")]
    accepted = 0
    for _ in range(3):
        results = [extractor.url_record(record, tally) for record in records]
        assert results == [("evil.example/a", "evil.example"), (), ()]
        accepted += sum(len(entries) for entries in results)
    assert (tally.pulled, accepted) == (9, 6)
    assert tally.skipped == {"allowed": 3}
    assert tally.rejected == {"unsupported_scheme": 3}


def test_tally_merge() -> None:
    """Merging adds counts reason by reason."""
    extractor = Extractor(BOTH_URL_SOURCES)
    first, second = Tally(), Tally()
    accepted = 0
    for tally, host in ((first, "a"), (second, "b")):
        accepted += len(extractor.url_record(url(f"https://{host}.example/x"), tally))
        extractor.url_record(url("http://10.0.0.1/"), tally)
        extractor.url_record(url(f"mailto:{host}@x.example"), tally)
        extractor.url_record(url(f"mailto:{host}2@x.example"), tally)
    first.merge(second)
    assert (first.pulled, accepted) == (8, 4)
    assert first.skipped == {"non_global_address": 2}
    assert first.rejected == {"unsupported_scheme": 4}


def test_builtin_protected_hosts() -> None:
    """The shipped list covers the shared platforms named in docs/design.md#what-is-never-blocked,
    each a valid host."""
    hosts = builtin_protected_hosts()
    assert len(hosts) >= 40
    for required in (
        "google.com",
        "forms.gle",
        "live.com",
        "sharepoint.com",
        "dropbox.com",
        "github.com",
        "githubusercontent.com",
        "office365.com",
        "microsoftonline.com",
    ):
        assert required in hosts
    assert all(normalise_host(host) == host for host in hosts)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("protect-eu.mimecast.com", True),
        ("protect-us.mimecast.com", True),
        ("protect2.mimecast.com", True),
        ("url.us.m.mimecastprotect.com", True),
        ("mimecastprotect.com", True),
        ("protect-uspcom.mimecast-pscom-us.com", True),
        ("www.mimecast.com", False),
        ("mimecast.com", False),
        ("protect-eu.mimecast.com.evil.example", False),
        ("protect.evil.example", False),
    ],
)
def test_mimecast_rewriter_hosts(host: str, expected: bool) -> None:
    """Only Mimecast's own rewriting hosts count as wrappers, not look-alikes of them."""
    tally = Tally()
    entries = Extractor(("malicious_urls",)).url_record(url(f"https://{host}/s/abc"), tally)
    assert (tally.skipped["wrapper"] == 1) is expected
    assert (entries == ()) is expected


def test_domain_identifiers_are_the_documented_ones() -> None:
    """The domain-type identifiers are exactly the seven of docs/design.md#mimecast, name-type ones
    excluded."""
    assert len(DOMAIN_IDENTIFIERS) == 7
    assert (
        not {
            "internal_user_name",
            "custom_name_list",
            "reply_address_mismatch",
            "targeted_threat_dictionary",
        }
        & DOMAIN_IDENTIFIERS
    )


# --- properties ---------------------------------------------------------------------------

url_text = st.one_of(
    st.text(max_size=120),
    st.builds(
        "{}{}{}{}".format,
        st.sampled_from(["http://", "https://", "", "ftp://", "HTTP://"]),
        st.from_regex(r"[a-zA-Z0-9äß._*-]{1,30}(\.[a-z]{2,6})?", fullmatch=True),
        st.sampled_from(["", ":8080", ":443", ":0"]),
        st.text(max_size=40).map(lambda path: "/" + path),
    ),
)
records = st.one_of(
    url_text.map(url),
    st.builds(lambda domain: sender(f"x@{domain}", "similar_internal_domain"), url_text),
    st.none(),
    st.dictionaries(st.sampled_from(["url", "senderAddress"]), st.text(max_size=30)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=8))
def test_every_entry_is_valid_and_every_record_is_counted(batch: list[object]) -> None:
    """Whatever the records, every entry passes is_valid_entry and each record is pulled once."""
    extractor = Extractor(ALL_SOURCES, allow=ALLOW)
    tally = Tally()
    accepted = 0
    for record in batch:
        extract = (
            extractor.impersonation_record
            if isinstance(record, dict) and "senderAddress" in record
            else extractor.url_record
        )
        entries = extract(record, tally)
        accepted += len(entries)
        for entry in entries:
            assert is_valid_entry(entry), (record, entry)
    assert tally.pulled == len(batch)
    outcomes = accepted + sum(tally.skipped.values()) + sum(tally.rejected.values())
    assert outcomes >= len(batch)


def test_reasons_are_short_snake_case() -> None:
    """Reasons are short snake_case words, fit for counters and status output."""
    extractor = Extractor(ALL_SOURCES, allow=ALLOW)
    tally = Tally()
    for case in URL_RECORD_CASES:
        extractor.url_record(case[2], tally)
    for case in IMPERSONATION_CASES:
        extractor.impersonation_record(case[1], tally)
    reasons = set(tally.skipped) | set(tally.rejected)
    assert len(reasons) >= 10
    assert all(reason.replace("_", "").isalpha() and reason.islower() for reason in reasons)
    assert Rejected("x").reason == "x" and Skipped("y").reason == "y"
