"""URLs and hosts shaped into ZIA entries (docs/design.md#entries)."""

from __future__ import annotations

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.indicators.grammar import is_valid_entry
from threatshare.indicators.normalise import (
    _PLAIN_URL,
    Rejected,
    Skipped,
    _parse_by_ada,
    _plain_parts,
    _serialise,
    normalise_host,
    normalise_url,
    split_url,
)

LONG_LABEL = "a" * 64
LABEL_63 = "a" * 63
HOST_OVER_255 = ".".join(["a" * 60] * 5)  # 304 characters
EXACTLY_1024 = "evil.example/" + "p" * (1024 - len("evil.example/"))


def rejected(reason: str) -> Rejected:
    return Rejected(reason)


def skipped(reason: str) -> Skipped:
    return Skipped(reason)


URL_CASES: list[tuple[str, str, str | Rejected | Skipped]] = [
    # The four examples of docs/design.md#entries.
    ("s2-login", "https://Evil.Example.COM:443/Login?x=1#f", "evil.example.com/login"),
    ("s2-idn-port", "http://bücher.example:8080/a/", "xn--bcher-kva.example:8080/a/"),
    ("s2-trailing-dot", "https://evil.example.", "evil.example"),
    ("s2-root-with-port", "https://h.example:8443/", "h.example:8443"),
    # IDN: UTS #46 non-transitional, as browsers and the WPT URL data.
    ("idn-sharp-s", "http://faß.de/x", "xn--fa-hia.de/x"),
    ("idn-upper", "https://BÜCHER.example/", "xn--bcher-kva.example"),
    ("idn-emoji", "http://☃.net/", "xn--n3h.net"),
    ("idn-ideographic-dot", "http://ex。com/", "ex.com"),
    ("idn-soft-hyphen-dropped", "http://ex\u00adample.com/", "example.com"),
    ("idn-zero-width-label", "http://\u200b.example/", rejected("empty_label")),
    # Case.
    ("upper-everything", "HTTP://EXAMPLE.COM/A/B", "example.com/a/b"),
    ("upper-percent", "http://EXAMPLE.COM/%C3%A4", "example.com/%c3%a4"),
    # Ports.
    ("default-http-port", "http://example.com:80/a", "example.com/a"),
    ("default-https-port", "https://example.com:443", "example.com"),
    ("http-on-443-kept", "http://example.com:443/", "example.com:443"),
    ("empty-port", "http://example.com:/a", "example.com/a"),
    ("port-out-of-range", "http://evil.example:99999/", rejected("unparsable")),
    ("port-zero", "http://evil.example:0/a", rejected("bad_port")),
    ("two-ports", "https://evil.example:443:443/", rejected("unparsable")),
    # Userinfo.
    ("userinfo", "https://user:pw@evil.example/p", "evil.example/p"),
    ("userinfo-with-at", "http://a@b@evil.example/", "evil.example"),
    # IPv4 literals.
    ("ipv4", "http://93.184.216.34/x", "93.184.216.34/x"),
    ("ipv4-port", "http://93.184.216.34:8080/", "93.184.216.34:8080"),
    ("ipv4-hex", "http://0x5db8d822/", "93.184.216.34"),
    ("ipv4-trailing-dot", "http://93.184.216.34./a", "93.184.216.34/a"),
    ("ipv4-private", "http://192.168.1.10/a", skipped("non_global_address")),
    ("ipv4-loopback", "http://127.0.0.1/", skipped("non_global_address")),
    ("ipv4-shared", "http://100.64.1.1/", skipped("non_global_address")),
    ("ipv4-link-local", "http://169.254.1.1/", skipped("non_global_address")),
    ("ipv4-documentation", "http://203.0.113.5/", skipped("non_global_address")),
    ("ipv4-benchmarking", "http://198.18.0.1/", skipped("non_global_address")),
    ("ipv4-reserved", "http://240.0.0.1/", skipped("non_global_address")),
    ("ipv4-unspecified", "http://0.0.0.0/", skipped("non_global_address")),
    ("ipv4-multicast", "http://224.0.0.251/", skipped("multicast_address")),
    ("ipv4-five-parts", "http://1.2.3.4.5/", rejected("unparsable")),
    # IPv6 literals: host-level, compressed, no brackets.
    ("ipv6-path-dropped", "http://[2606:4700:0:0::1111]/dns-query", "2606:4700::1111"),
    ("ipv6-port-dropped", "https://[2606:4700::1111]:8443/", "2606:4700::1111"),
    ("ipv6-mapped-global", "http://[::ffff:8.8.8.8]/", "::ffff:808:808"),
    ("ipv6-mapped-private", "http://[::ffff:10.0.0.1]/", skipped("non_global_address")),
    ("ipv6-loopback", "http://[::1]/", skipped("non_global_address")),
    ("ipv6-unique-local", "http://[fd00::1]/", skipped("non_global_address")),
    ("ipv6-documentation", "http://[2001:db8::1]/", skipped("non_global_address")),
    ("ipv6-multicast", "http://[ff02::1]/", skipped("multicast_address")),
    ("ipv6-zone", "http://[2606:4700::1111%25eth0]/", rejected("unparsable")),
    # Dots and labels.
    ("trailing-dot-path", "http://Evil.Example./x", "evil.example/x"),
    ("two-trailing-dots", "http://evil.example../", rejected("empty_label")),
    ("leading-dot", "http://.evil.example/", rejected("empty_label")),
    ("double-dot", "http://evil..example/", rejected("empty_label")),
    ("single-label", "http://intranet/", rejected("single_label")),
    ("single-label-no-scheme", "localhost:8080", rejected("single_label")),
    ("label-63", f"http://{LABEL_63}.example/", f"{LABEL_63}.example"),
    ("label-64", f"http://{LONG_LABEL}.example/", rejected("label_too_long")),
    ("host-over-255", f"http://{HOST_OVER_255}/", rejected("host_too_long")),
    ("host-bad-character", "http://ev$il.example/", rejected("bad_host_character")),
    ("hyphens-kept", "http://ab--cd.example/", "ab--cd.example"),
    # Underscore rule.
    ("underscore-sld-with-subdomain", "http://www.safe_march.com/", rejected("underscore")),
    ("underscore-sld-alone", "http://safe_march.com/", "safe_march.com"),
    ("underscore-subdomain", "http://a_b.example.com/", "a_b.example.com"),
    ("underscore-bare-label", "http://_.example.com/", rejected("underscore")),
    ("underscore-tld", "http://example.co_m/", rejected("underscore")),
    # Wildcards.
    ("star-host", "http://*.evil.example/", rejected("wildcard")),
    ("star-path", "http://evil.example/a*b", rejected("wildcard")),
    ("star-in-query-dropped", "http://evil.example/a?b=*", "evil.example/a"),
    # Lengths apply to the shaped entry, not the input.
    ("exactly-1024", "http://" + EXACTLY_1024, EXACTLY_1024),
    ("over-1024", "http://" + EXACTLY_1024 + "p", rejected("too_long")),
    ("long-query-dropped", "https://evil.example/a?" + "q" * 5000, "evil.example/a"),
    # Empty and whitespace.
    ("empty", "", rejected("empty")),
    ("whitespace-only", "  \t\n ", rejected("empty")),
    ("surrounding-whitespace", "  https://evil.example/a \n", "evil.example/a"),
    ("space-in-host", "http://ev il.example/", rejected("unparsable")),
    ("tab-inside-scheme", "ht\ttps://evil.example/a", "evil.example/a"),
    # Queries and fragments.
    ("query-on-root", "https://evil.example/?a=b", "evil.example"),
    ("fragment", "https://evil.example/p#frag", "evil.example/p"),
    ("fragment-before-question-mark", "https://evil.example/p#f?x", "evil.example/p"),
    # Percent-encoding: what the browser keeps, lower-cased; ASCII only.
    ("percent-kept", "http://evil.example/%7Efoo%2F", "evil.example/%7efoo%2f"),
    ("space-in-path", "http://evil.example/a b", "evil.example/a%20b"),
    ("non-ascii-path", "http://evil.example/ä", "evil.example/%c3%a4"),
    ("control-in-path", "http://evil.example/a\x01b", "evil.example/a%01b"),
    ("quotes-in-path", "http://evil.example/'\"<>", "evil.example/'%22%3c%3e"),
    ("percent-in-host-decoded", "http://ev%69l.example/", "evil.example"),
    ("dot-segments", "http://evil.example/a/../b/./c", "evil.example/b/c"),
    ("backslashes", "http://evil.example\\a\\b", "evil.example/a/b"),
    (
        "scheme-in-path-kept",
        "https://r.example/go/http://evil.example",
        "r.example/go/http://evil.example",
    ),
    # No scheme: read as http://.
    ("no-scheme", "evil.example/login", "evil.example/login"),
    ("no-scheme-port", "evil.example:8080/x", "evil.example:8080/x"),
    ("no-scheme-bare-host", "Evil.Example", "evil.example"),
    ("scheme-relative", "//evil.example/x", "evil.example/x"),
    ("http-without-slashes", "http:evil.example/a", "evil.example/a"),
    # Other schemes.
    ("ftp", "ftp://evil.example/x", rejected("unsupported_scheme")),
    ("mailto", "mailto:a@evil.example", rejected("unsupported_scheme")),
    ("javascript", "javascript:alert(1)", rejected("unsupported_scheme")),
    ("data", "data:text/html,hi", rejected("unsupported_scheme")),
    ("file", "file:///etc/passwd", rejected("unsupported_scheme")),
    ("custom-scheme", "myapp://evil.example/", rejected("unsupported_scheme")),
]


@pytest.mark.parametrize(
    ("value", "expected"), [case[1:] for case in URL_CASES], ids=[case[0] for case in URL_CASES]
)
def test_normalise_url(value: str, expected: str | Rejected | Skipped) -> None:
    """A URL becomes the entry a browser would request, or is rejected/skipped with a reason."""
    if isinstance(expected, str):
        entry = normalise_url(value)
        assert entry == expected
        assert is_valid_entry(entry)
    else:
        with pytest.raises(type(expected)) as caught:
            normalise_url(value)
        assert caught.value.reason == expected.reason


HOST_CASES: list[tuple[str, str, str | Rejected | Skipped]] = [
    ("host-upper-trailing-dot", "Examp1e.COM.", "examp1e.com"),
    ("host-idn", "bücher.example", "xn--bcher-kva.example"),
    ("host-ipv6-bracketed", "[2606:4700:0::1111]", "2606:4700::1111"),
    ("host-ipv6-bare", "2606:4700:0::1111", "2606:4700::1111"),
    ("host-ipv4", "8.8.8.8", "8.8.8.8"),
    ("host-ipv4-private", "10.0.0.1", skipped("non_global_address")),
    ("host-ipv6-zone", "2606:4700::1111%eth0", rejected("not_a_host")),
    ("host-not-ipv6", "a:b:c", rejected("not_a_host")),
    ("host-with-port", "example.com:80", rejected("not_a_host")),
    ("host-with-path", "example.com/x", rejected("not_a_host")),
    ("host-address", "user@example.com", rejected("not_a_host")),
    ("host-bare-tld", "com", rejected("single_label")),
    ("host-leading-dot", ".example.com", rejected("empty_label")),
    ("host-star", "*.example.com", rejected("wildcard")),
    ("host-empty", "  ", rejected("empty")),
    ("host-whitespace-trimmed", " x.example\t", "x.example"),
    ("host-space-inside", "ex ample.com", rejected("unparsable")),
]


@pytest.mark.parametrize(
    ("value", "expected"), [case[1:] for case in HOST_CASES], ids=[case[0] for case in HOST_CASES]
)
def test_normalise_host(value: str, expected: str | Rejected | Skipped) -> None:
    """A bare host or sender domain follows the host rules of a URL (IDNA, labels, IPs)."""
    if isinstance(expected, str):
        assert normalise_host(value) == expected
    else:
        with pytest.raises(type(expected)) as caught:
            normalise_host(value)
        assert caught.value.reason == expected.reason


def test_over_long_url_keeps_its_host() -> None:
    """A URL too long for an entry still yields its host, so url_domains can push it."""
    parts = split_url("https://Evil.Example/" + "a" * 2000)
    assert parts.entry is None
    assert parts.problem == "too_long"
    assert parts.host == "evil.example"


def test_non_text_is_rejected() -> None:
    """A value that is not a string is rejected, not crashed on."""
    with pytest.raises(Rejected) as caught:
        normalise_url(42)  # type: ignore[arg-type]
    assert caught.value.reason == "not_text"
    with pytest.raises(Rejected):
        normalise_host(None)  # type: ignore[arg-type]


VALID_ENTRIES = [
    "example.com",
    "example.com/a",
    "example.com:8080/a/",
    ".example.com",
    "1.2.3.4",
    "1.2.3.4:80/x",
    "2606:4700::1111",
    "safe_march.com",
    "a_b.example.com",
    "r.example/go/http://x.example",
    "example.com/%c3%a4",
    "xn--bcher-kva.example",
]
INVALID_ENTRIES = [
    "",
    "Example.com",
    "example.com/A",
    "http://example.com",
    "*.example.com",
    "example.com/a*",
    "example.com/",
    "example.com/a?b",
    "example.com/a#b",
    "example.com/a b",
    "example",
    ".com",
    "..example.com",
    ".example.com/a",
    ".1.2.3.4",
    "1.2.3.256",
    "01.2.3.4",
    "example.1",
    "2606:4700:0::1111",
    "[2606:4700::1111]",
    "2606:4700::1111/x",
    "fe80::1%eth0",
    "www.safe_march.com",
    "_.example.com",
    "example.com:0",
    "example.com:65536",
    "example.com:80:80",
    "exämple.com",
    LONG_LABEL + ".com",
    HOST_OVER_255,
    "x.example/" + "a" * 1020,
]


@pytest.mark.parametrize("entry", VALID_ENTRIES)
def test_valid_entries(entry: str) -> None:
    """Entries that follow ZIA's rules pass is_valid_entry."""
    assert is_valid_entry(entry)


@pytest.mark.parametrize("entry", INVALID_ENTRIES)
def test_invalid_entries(entry: str) -> None:
    """Entries that break one of ZIA's rules fail is_valid_entry."""
    assert not is_valid_entry(entry)


# --- properties ---------------------------------------------------------------------------

_LABEL_CHARS = st.sampled_from("abcXYZ019-_*.%äßü☃。\u200b ")
plain_labels = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,10}", fullmatch=True)
odd_labels = st.text(_LABEL_CHARS, min_size=0, max_size=70)
labels = st.one_of(plain_labels, plain_labels, odd_labels)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=5).map(".".join),
    st.lists(plain_labels, min_size=2, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.sampled_from(["Evil.Example", "bücher.example", "a" * 64 + ".com", "x.", "..", "[::1]"]),
)
url_like = st.builds(
    lambda scheme, userinfo, host, port, path, query, fragment: (
        f"{scheme}{userinfo}{host}{port}{path}{query}{fragment}"
    ),
    st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "", "//", "mailto:", "http:"]),
    st.sampled_from(["", "user@", "u:p@", "a@b@"]),
    hosts,
    st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}")),
    st.one_of(st.just(""), st.text(max_size=40).map(lambda p: "/" + p), st.just("/" + "x" * 1100)),
    st.sampled_from(["", "?q=1", "?*"]),
    st.sampled_from(["", "#frag", "#a?b"]),
)


def _shaped_or_refused(function: object, value: str) -> str | None:
    try:
        return function(value)  # type: ignore[operator]
    except (Rejected, Skipped):
        return None


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_valid_entries_or_a_reason(value: str) -> None:
    """Whatever the text, the URL and host shapers give a valid entry or a reason, nothing else."""
    for function in (normalise_url, normalise_host):
        entry = _shaped_or_refused(function, value)
        assert entry is None or is_valid_entry(entry), (value, entry)


@settings(max_examples=400, deadline=None)
@given(url_like)
def test_url_like_text_gives_valid_entries(value: str) -> None:
    """Generated URLs (random schemes, hosts, ports, paths, unicode) shape into valid entries."""
    entry = _shaped_or_refused(normalise_url, value)
    assert entry is None or is_valid_entry(entry), (value, entry)
    try:
        parts = split_url(value)
    except (Rejected, Skipped):
        return
    assert is_valid_entry(parts.host), (value, parts.host)
    assert (parts.entry is None) == (parts.problem is not None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), url_like))
def test_fast_serialiser_agrees_with_ada(value: str) -> None:
    """The direct serialiser gives exactly ada_url.normalize_url's href, or fails where it fails."""

    def href(function: object) -> str | None:
        try:
            return function(value)  # type: ignore[operator]
        except ValueError:
            return None

    assert href(_serialise) == href(ada_url.normalize_url)


# Pieces of URLs at the edges of what the plain way takes: numeric and hex last labels, IDNA,
# hyphens, long labels, dot segments, default, padded and out-of-range ports. Mostly plain
# pieces, so that most examples take the plain way and are held to ada's answer.
_LABELS = ["a", "b1", "example", "ex-ample", "1e3", "-a", "a-", "-", "a" * 63, "a" * 64,
           "xn--bcher-kva", "xn--a", "0x", "0x1f", "0xg", "1", "255", "08"]  # fmt: skip
_SEGMENTS = ["", ".", "..", "...", ".a", "a.", "B..", "a", "A", "~", "!$&()*+,;=:", "-_", "x:y",
             "*"]  # fmt: skip
_PORTS = ["", ":80", ":443", ":0", ":00080", ":0443", ":8443", ":65535", ":65536", ":99999"]
_QUERIES = ["", "?", "?a=1", "?a=%zz", "??", "?/x", "?@", "?%2e", "?.."]
_FRAGMENTS = ["", "#", "#top", "#a#b", "#%"]

plain_like = st.builds(
    lambda scheme, labels, port, segments, query, fragment: (
        f"{scheme}://{'.'.join(labels)}{port}{''.join('/' + s for s in segments)}{query}{fragment}"
    ),
    st.sampled_from(["http", "https"]),
    st.lists(st.sampled_from(_LABELS), min_size=1, max_size=4),
    st.sampled_from(_PORTS),
    st.lists(st.sampled_from(_SEGMENTS), max_size=4),
    st.sampled_from(_QUERIES),
    st.sampled_from(_FRAGMENTS),
)


@settings(max_examples=3000, deadline=None)
@given(plain_like)
def test_plain_urls_split_as_ada_serialises_them(value: str) -> None:
    """A URL the plain way takes gives exactly what ada's serialisation gives; one it leaves to
    ada is one whose serialisation would differ from it (or one ada refuses)."""
    plain = _PLAIN_URL.fullmatch(value)
    parts = None if plain is None else _plain_parts(plain)
    if parts is not None:
        assert parts == _parse_by_ada(value), value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://evil.example/login?id=1#top", ("https", "evil.example", "", "/login", "id=1")),
        ("http://evil.example", ("http", "evil.example", "", "/", "")),
        ("http://evil.example:80/a", ("http", "evil.example", "", "/a", "")),
        ("https://evil.example:443/a", ("https", "evil.example", "", "/a", "")),
        ("http://evil.example:443/a", ("http", "evil.example", "443", "/a", "")),
        ("https://evil.example:08443/", ("https", "evil.example", "8443", "/", "")),
        ("http://evil.example?q", ("http", "evil.example", "", "/", "q")),
        ("http://1e3.example.a-b/x//y", ("http", "1e3.example.a-b", "", "/x//y", "")),
    ],
)
def test_plain_urls_taken_without_ada(value: str, expected: tuple[str, ...]) -> None:
    plain = _PLAIN_URL.fullmatch(value)
    assert plain is not None
    assert _plain_parts(plain) == expected == _parse_by_ada(value)


@pytest.mark.parametrize(
    "value",
    [
        "http://127.1/",  # an IPv4 address to the URL Standard
        "http://evil.0x7f/",  # so is a hex last label
        "http://xn--bcher-kva.example/",  # IDNA: decoded and checked
        "http://evil.example/a/../b",  # dot segments are resolved
        "http://evil.example/.%2e/b",
        "http://evil.example:65536/",  # out of range: ada refuses it
        "http://Evil.example/",  # upper case is lowered
        "http://user@evil.example/",  # userinfo
        "http://evil.example/a b",  # encoded
        "http://evil.example/?a'b",
    ],
)
def test_urls_the_plain_way_leaves_to_ada(value: str) -> None:
    plain = _PLAIN_URL.fullmatch(value)
    assert plain is None or _plain_parts(plain) is None
