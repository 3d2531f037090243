"""The extractor's short ways for a first-time URL give the outcomes of the general ones
(threatshare/indicators/judge.py, grammar.py, normalise.py; docs/design.md#performance)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.indicators.cache import OVERHEAD, ByteBoundedCache
from threatshare.indicators.extract import Extractor, Tally
from threatshare.indicators.grammar import (
    MAX_HOST,
    is_valid_entry,
    is_valid_entry_on,
    is_valid_host,
)
from threatshare.indicators.judge import JUDGED, Decision, Judge
from threatshare.indicators.normalise import (
    _PLAIN_NAME,
    Rejected,
    Skipped,
    UrlParts,
    _shape_host,
    split_url,
)
from threatshare.indicators.rules import Rules, host_keys

# Hosts of every kind the rules tell apart: IDN, addresses, protected platforms, wrappers,
# public suffixes (wildcards and exceptions too), underscores, over-long labels and names.
HOSTS = [
    "evil.example", "Evil.Example.COM", "login-1.phish-1.example", "a.b.c.d.example",
    "xn--bcher-kva.example", "bücher.example", "☃.example", "xn--zz.example", "ab--cd.example",
    "_dmarc.evil.example", "a_b.evil.example", "evil.ex_ample", "ev_il.example", "_.example",
    "-lead.example", "trail-.example", "a" * 63 + ".example", "a" * 64 + ".example",
    ".".join(["a" * 60] * 4) + ".example", "evil.example.", "evil..example", "localhost",
    "co.uk", "evil.co.uk", "github.io", "evil.github.io", "s3.amazonaws.com", "ck", "foo.ck",
    "www.ck", "nom.br", "x.nom.br", "docs.google.com", "google.com", "www.google.com",
    "github.com", "contoso.sharepoint.com", "login.microsoftonline.com", "drive.google.com",
    "protect-eu.mimecast.com", "partner.example", "a.partner.example", "93.184.216.34",
    "8.8.8.8", "10.1.2.3", "224.0.0.1", "0x7f.1", "1.2.3", "256.1.1.1", "example.123",
    "example.1a", "1.example", "[2606:4700::1111]", "[::1]", "[fe80::1]", "evil*.example",
    "ev%69l.example", "ＥＶＩＬ.example", "user:pw@evil.example", "linkprotect.cudasvc.com",
]  # fmt: skip
PATHS = [
    "", "/", "/login", "/Login/Verify", "/a/b/", "/a*b", "/%41b", "/é", "/a b", "/a#f", "/?x=1",
    "/8", "/24", "/x" * 600, "/forms/d/e/x/viewform", "/common/oauth2", "/uc?id=1",
    "/url?q=https://evil.example/x", "/s/abc?domain=x", "/../a/./b", "\\a\\b", "/a\"b<c>",
    "/~user;b=c", "/😀", "/about/x",
]  # fmt: skip
PORTS = ["", ":80", ":443", ":8443", ":0", ":65535", ":65536", ":08"]
SCHEMES = ["https://", "http://", "", "ftp://", "HTTP://"]
ALLOW = ("partner.example", "mail.corp.example", "93.184.216.34")
SOURCES = [
    ("malicious_urls", "url_domains"),
    ("malicious_urls",),
    ("url_domains",),
]


def corpus() -> list[str]:
    """Every host with a sample of schemes, ports and paths, in a fixed order."""
    rng = random.Random(5)
    urls = []
    for host in HOSTS:
        for _ in range(12):
            urls.append(rng.choice(SCHEMES) + host + rng.choice(PORTS) + rng.choice(PATHS))
    return urls


def general_url_outcomes(
    judge: Judge, parts: UrlParts, flags: int, want_urls: bool, want_hosts: bool
) -> tuple[Decision, ...]:
    """The outcomes of a URL on a host with none of the JUDGED flags, as the general way judges
    any URL: each entry through Judge.host_level or Judge.path, checked whole by
    is_valid_entry."""

    def checked(outcome: Decision) -> Decision:
        if outcome[0] == "accept" and not is_valid_entry(outcome[1]):
            return ("reject", "invalid_entry")
        return outcome

    host_outcome = checked(judge.host_level(parts.host, parts.host, flags))
    if not want_urls:
        return (host_outcome,)
    if parts.entry is None:
        url_outcome: Decision = ("reject", parts.problem or "invalid")
    elif parts.entry == parts.host:
        url_outcome = host_outcome
    elif not parts.has_path:
        url_outcome = checked(judge.host_level(parts.entry, parts.host, flags))
    else:
        url_outcome = checked(judge.path(parts, flags))
    if not want_hosts or url_outcome == host_outcome:
        return (url_outcome,)
    return (url_outcome, host_outcome)


# What may follow a host in an entry the shaping would make (and, as if the shaping had a gap,
# what must never reach ZIA: port 0 or too big, upper case, a space, a star, a query).
ENTRY_RESTS = [":8443", ":8443/a", "/a/b", "/~a;b=c", ":0", ":65536", "/A", "/a b", "/a*", "/?q"]


def parts_of_corpus() -> list[UrlParts]:
    """The corpus split, and entries made by hand on each of its hosts."""
    found = []
    for value in corpus():
        try:
            found.append(split_url(value))
        except (Rejected, Skipped):
            continue
    for host in {parts.host for parts in found}:
        for rest in ENTRY_RESTS:
            path = rest.partition("/")[1] + rest.partition("/")[2] or "/"
            found.append(UrlParts(host, host + rest, None, path != "/", path, ""))
    return found


def test_a_host_on_no_list_is_judged_as_the_general_way_judges_it() -> None:
    """For every URL of the corpus, and entries made by hand, on a host that carries none of
    the JUDGED flags, Judge.url's short way gives the outcomes of the general way, for each
    choice of sources."""
    shortcuts = 0
    for want_urls, want_hosts in [(True, True), (True, False), (False, True)]:
        judge = Judge(Rules(), host_keys(ALLOW), want_urls, want_hosts)
        for parts in parts_of_corpus():
            flags = judge.host_flags(parts.host)
            if flags & JUDGED:
                continue
            shortcuts += 1
            expected = general_url_outcomes(judge, parts, flags, want_urls, want_hosts)
            assert judge.url(parts, flags) == expected, parts
    assert shortcuts > 300  # the corpus exercised the short way


def test_records_decide_the_same_first_time_and_from_the_cache() -> None:
    """A URL decided the first time (flags computed, short or general way) gives the same
    entries and counts when it comes again from the caches, for every kind of host."""
    for sources in SOURCES:
        extractor = Extractor(sources, allow=ALLOW)
        first = []
        for value in corpus():
            tally = Tally()
            first.append(
                (extractor.url_record({"url": value}, tally), tally.skipped, tally.rejected)
            )
        for value, (entries, skipped, rejected) in zip(corpus(), first, strict=True):
            tally = Tally()
            assert extractor.url_record({"url": value}, tally) == entries, value
            assert (tally.skipped, tally.rejected) == (skipped, rejected), value


_HOST_TEXT = st.text(alphabet="abcz09-_.:/[]%*A", min_size=0, max_size=70)
_REST_TEXT = st.text(alphabet="ab0189:/_-.?#*% A\x7f~é", min_size=0, max_size=30)


@settings(max_examples=2000, deadline=None)
@given(host=_HOST_TEXT, rest=_REST_TEXT)
def test_an_entry_checked_past_its_valid_host_is_judged_as_a_whole(host: str, rest: str) -> None:
    """is_valid_entry_on, for any host that passes is_valid_entry, answers as is_valid_entry
    does on the whole entry, whatever follows the host."""
    if is_valid_entry(host):
        assert is_valid_entry_on(host, host + rest) == is_valid_entry(host + rest)
        assert is_valid_entry_on(host, rest) == is_valid_entry(rest)
        assert is_valid_entry_on(host, "." + host) == is_valid_entry("." + host)


def test_entries_on_the_corpus_hosts_are_checked_as_a_whole() -> None:
    """is_valid_entry_on agrees with is_valid_entry for every valid corpus host, port and path,
    near ZIA's length limits too."""
    checked = 0
    for value, port, path in itertools.product(HOSTS, [*PORTS, ":1", ":99999"], PATHS):
        host = value.lower()
        if not is_valid_entry(host):
            continue
        long_path = "/" + "a" * (1022 - len(host))
        for entry in (host + port + path.lower(), host + port + long_path, "." + host):
            checked += 1
            assert is_valid_entry_on(host, entry) == is_valid_entry(entry), entry
    assert checked > 1000


@settings(max_examples=2000, deadline=None)
@given(host=_HOST_TEXT)
def test_a_host_is_valid_by_one_match_as_by_the_whole_grammar(host: str) -> None:
    """is_valid_host answers as is_valid_entry for any text taken as a host."""
    assert is_valid_host(host) == is_valid_entry(host)


def test_corpus_hosts_are_valid_by_one_match_as_by_the_whole_grammar() -> None:
    """is_valid_host answers as is_valid_entry for every corpus host, shaped or not, and for
    names at the length limit."""
    long_names = ["a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * n for n in (61, 62, 63)]
    for value in [*HOSTS, *(h.lower().strip("[]") for h in HOSTS), *long_names]:
        assert is_valid_host(value) == is_valid_entry(value), value


@settings(max_examples=2000, deadline=None)
@given(hostname=st.text(alphabet="abz019-._", min_size=1, max_size=80))
def test_a_plain_name_is_the_host_the_general_shaping_gives(hostname: str) -> None:
    """A hostname split_url and normalise_host take as shaped (_PLAIN_NAME) is one _shape_host
    returns unchanged, and not an address (so its path entries are never read as a range)."""
    if len(hostname) <= MAX_HOST and _PLAIN_NAME.fullmatch(hostname):
        assert _shape_host(hostname) == hostname
        assert not hostname.rpartition(".")[2].isdigit()


def test_the_cache_charges_exactly_what_it_holds_through_evictions() -> None:
    """Costs worked out again on eviction keep the charge equal to the cost of the items held,
    with and without a size function."""
    for size in (len, None):
        cache: ByteBoundedCache[str] = ByteBoundedCache(lambda key: key * 3, size, budget=5000)
        for n in range(400):
            cache(f"key-{n}-" + "x" * (n % 37))
            held = sum(
                len(slot) + OVERHEAD + (0 if size is None else size(value))
                for slot, value in cache.items.items()
            )
            assert cache.charged == held <= cache.budget
        assert 0 < len(cache) < 400
