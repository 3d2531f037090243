"""Shape URLs and hosts into entries that ZIA accepts in a custom URL category
(docs/design.md#entries).

A value is parsed as a browser parses it (the WHATWG URL Standard with UTS #46 IDNA, through
``ada_url``), so the entry matches what a browser will request, and then shaped to ZIA's rules
(docs/design.md#limits-of-zia)::

    https://Evil.Example.COM:443/Login?x=1#f   ->  evil.example.com/login
    http://bücher.example:8080/a/              ->  xn--bcher-kva.example:8080/a/
    https://evil.example.                      ->  evil.example
    http://[2606:4700:0::1111]/x               ->  2606:4700::1111   (IPv6: host-level only)

Two outcomes besides an entry, both carrying a short snake_case ``reason``:

- :class:`Rejected`: the value cannot be made into a valid entry (bad scheme, too long, ``*``,
  empty or single label…). One invalid entry makes ZIA refuse a whole request, so it is never
  sent.
- :class:`Skipped`: the value is fine but must not be pushed (an IP literal that is not globally
  routable).

ZIA's format rules are written again on their own in :mod:`threatshare.indicators.grammar`,
independent of the shaping code, as a last guard and for property tests.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import NamedTuple

import ada_url

from threatshare.indicators.grammar import MAX_ENTRY, MAX_HOST, MAX_LABEL

__all__ = [
    "Rejected",
    "Skipped",
    "UrlParts",
    "normalise_host",
    "normalise_url",
    "split_url",
]

_WEB_SCHEMES = frozenset({"http", "https"})
# What a browser strips from both ends of a URL, and deletes anywhere inside it.
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
# A scheme as the URL Standard defines it; "example.com:8080/x" looks like one (see _with_scheme).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT_AFTER_COLON = re.compile(r"[0-9]*(?:[/\\?#]|$)")
# Hosts as ZIA takes them; the common case (no underscore) is checked by one regex.
_PLAIN_HOST = re.compile(r"(?:[a-z0-9-]{1,63}\.)+[a-z0-9-]{1,63}")
_LABEL = re.compile(r"[a-z0-9_-]+")
# A host _PLAIN_HOST takes whose last label is not all digits (that would be an IPv4 literal).
_PLAIN_NAME = re.compile(r"(?:[a-z0-9-]{1,63}\.)+(?=[a-z0-9-]{0,62}[a-z-])[a-z0-9-]{1,63}")
_HOST_STOPS = re.compile(r"[/\\?#@]")
# A URL whose serialisation by the URL Standard is itself, up to its port (see _plain_parts): a
# lower-case ASCII host, a path and a query of characters no parser encodes or reads specially.
_PLAIN_URL = re.compile(
    r"(https?)://((?:[a-z0-9-]+\.)*[a-z0-9-]+)(?::([0-9]{1,5}))?"
    r"(/[A-Za-z0-9._~!$&()*+,;=:/-]*)?(?:\?([A-Za-z0-9._~!$&()*+,;=:@/?%-]*))?(?:#[!-~]*)?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Rejected(ValueError):
    """The value cannot be made into a valid ZIA entry; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Skipped(ValueError):
    """The value is well formed but must never be pushed; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UrlParts(NamedTuple):
    """A URL shaped for ZIA: its host entry, and its URL entry or the reason there is none.

    Rejection is per entry: a URL too long to be an entry still has a host worth pushing.
    """

    host: str  # host-level entry: ASCII, lower case, no trailing dot, IPv6 without brackets
    entry: str | None  # host[:port][/path]; None when it cannot be made valid
    problem: str | None  # why ``entry`` is None
    has_path: bool  # ``entry`` is path-level (host-level entries get stricter checks)
    path: str = "/"  # the path as serialised (case kept): wrappers read their target in it
    query: str = ""  # the query as serialised, without "?": "" when the URL had none


# UrlParts made straight from a tuple: the NamedTuple's own __new__ is one more Python call per
# URL, a tenth of what shaping a URL costs.
_url_parts = tuple.__new__


def normalise_url(value: str) -> str:
    """The URL entry ``host[:port][/path]`` for a URL, or raise Rejected/Skipped."""
    parts = split_url(value)
    if parts.entry is None:
        raise Rejected(parts.problem or "invalid")
    return parts.entry


def normalise_host(value: str) -> str:
    """The host-level entry for a bare host or a sender domain, or raise Rejected/Skipped."""
    if not isinstance(value, str):
        raise Rejected("not_text")
    text = _browser_trim(value)
    if not text:
        raise Rejected("empty")
    if _HOST_STOPS.search(text):
        raise Rejected("not_a_host")
    if ":" in text:
        # Only an IPv6 literal may hold a colon here: a host-level entry carries no port.
        literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            raise Rejected("not_a_host") from None
        if address.scope_id is not None:
            raise Rejected("not_a_host")  # "%eth0" names an interface of one machine
        return _ipv6_host(address)
    hostname = _parse("http://" + text)[1]
    if len(hostname) <= MAX_HOST and _PLAIN_NAME.fullmatch(hostname):
        return hostname  # the common case, shaped already (see split_url)
    return _shape_host(hostname)


def split_url(value: str) -> UrlParts:
    """Parse ``value`` as a browser would and shape its host and URL entries.

    Raises :class:`Rejected` or :class:`Skipped` when the URL as a whole is unusable (scheme,
    host, non-global address); a URL entry that only breaks a rule of its own (length, ``*``)
    is reported in :attr:`UrlParts.problem` instead, so the host can still be used.
    """
    if not isinstance(value, str):
        raise Rejected("not_text")
    text = _browser_trim(value)
    if not text:
        raise Rejected("empty")
    scheme, hostname, port, path, query = _parse(_with_scheme(text))
    if scheme not in _WEB_SCHEMES:
        raise Rejected("unsupported_scheme")
    if len(hostname) <= MAX_HOST and _PLAIN_NAME.fullmatch(hostname):
        # The common case, shaped already: a domain name as ZIA takes it (what _shape_host
        # accepts unchanged), neither an address nor ending in a dot.
        host = hostname
        has_path = path != "/"
    else:
        host = _shape_host(hostname)
        if ":" in host:
            # ZIA matches an IPv6 literal only as a whole host: no port, no path.
            return _url_parts(UrlParts, (host, host, None, False, path, query))
        # "1.0.0.0/8" after an address reads as a range to whoever looks at the category: the
        # address alone is the entry (docs/design.md#what-is-never-blocked).
        has_path = path != "/" and not (path[1:].isdigit() and host.rpartition(".")[2].isdigit())
    if not (has_path or port):
        return _url_parts(UrlParts, (host, host, None, False, path, query))
    entry = f"{host}:{port}" if port else host
    if has_path:
        # ada percent-encodes non-ASCII and controls in paths; ZIA takes lower case only.
        entry += path.lower()
    problem = _entry_problem(entry, path, port)
    return _url_parts(UrlParts, (host, None if problem else entry, problem, has_path, path, query))


# --- parsing and shaping ------------------------------------------------------------------


def _browser_trim(value: str) -> str:
    text = value.strip(_C0_AND_SPACE)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_TAB_NEWLINE)
    return text


def _with_scheme(text: str) -> str:
    """``text`` with ``http://`` in front when it has no scheme of its own.

    ``example.com:8080/x`` and ``localhost:80`` look like a scheme followed by a path to the URL
    Standard; a candidate scheme with a dot, or followed by digits (a port), is a host.
    """
    if text.startswith(("http://", "https://")):
        return text
    match = _SCHEME.match(text)
    if match is None:
        return "http://" + text
    scheme = match.group(1)
    if scheme.lower() in ("http", "https"):
        return text
    rest = text[match.end() :]
    if rest[:1] in ("/", "\\"):
        return text  # a real scheme (ftp://, file:///…): rejected after parsing
    if "." in scheme or _PORT_AFTER_COLON.match(rest):
        return "http://" + text
    return text  # mailto:, javascript:, data:… : rejected after parsing


def _parse(url: str) -> tuple[str, str, str, str, str]:
    """Scheme, hostname, port, path and query of ``url`` as a browser serialises it (href).

    A plain URL, most of those Mimecast reports, is split as it is (:func:`_plain_parts`);
    any other goes through ada (:func:`_parse_by_ada`).
    """
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        parts = _plain_parts(plain)
        if parts is not None:
            return parts
    return _parse_by_ada(url)


def _parse_by_ada(url: str) -> tuple[str, str, str, str, str]:
    """:func:`_parse` through one call into ada for the serialised URL, then plain string
    splitting: in a serialised special URL, userinfo ends at the last ``@`` of the authority,
    the path starts at the first ``/`` after it and ends at the first ``?`` or ``#``, and a
    default port is already gone."""
    try:
        href = _serialise(url)
    except ValueError:  # includes UnicodeEncodeError (lone surrogates)
        raise Rejected("unparsable") from None
    scheme, separator, rest = href.partition("://")
    if not separator:
        return scheme.partition(":")[0], "", "", "", ""  # mailto:, javascript:, data: …
    slash = rest.find("/")
    if slash < 0:
        return scheme, "", "", "", ""  # not a special URL: refused for its scheme
    host_port = rest[:slash].rpartition("@")[2]
    path, _, query = rest[slash:].partition("#")[0].partition("?")
    if host_port.startswith("["):
        hostname, _, port = host_port.partition("]")
        return scheme, hostname + "]", port[1:], path, query
    hostname, _, port = host_port.partition(":")
    return scheme, hostname, port, path, query


def _plain_parts(plain: re.Match[str]) -> tuple[str, str, str, str, str] | None:
    """What :func:`_parse` makes of a URL that matched :data:`_PLAIN_URL`, or None where the URL
    Standard would still change it: a host it reads as an IPv4 address (its last label a
    number) or decodes (``xn--``), a dot segment it resolves, a port out of range. Otherwise its
    serialisation differs only by the port: leading zeros and the scheme's default dropped.
    tests/indicators/test_normalise.py holds the two ways to the same answers."""
    scheme, host, port, path, query = plain.groups()
    last = host[host.rfind(".") + 1 :]
    if last.isdigit() or last.startswith("0x") or "xn--" in host:
        return None
    if path is None:
        path = "/"
    elif "/." in path:
        return None
    if port is not None:
        number = int(port)
        if number > 65535:
            return None
        port = "" if number == _DEFAULT_PORTS[scheme] else str(number)
    return scheme, host, port or "", path, query or ""


def _load_serialiser() -> Callable[[str], str]:
    """ada's serialisation (href) of a URL; raises ValueError when the URL does not parse.

    Straight through ada's own cffi binding when it is there: ``ada_url.normalize_url`` builds
    a dict of attributes per call, which costs more than the parse itself
    (docs/design.md#performance asks for 100,000 records a second). Both give the same href; the
    tests hold them to it.
    """
    try:
        from ada_url.ada_adapter import ffi, lib
    except ImportError:  # pragma: no cover - a future ada_url without the binding
        return ada_url.normalize_url

    parse, is_valid, get_href, free, unpack = (
        lib.ada_parse,
        lib.ada_is_valid,
        lib.ada_get_href,
        lib.ada_free,
        ffi.unpack,
    )

    def serialise(url: str) -> str:
        data = url.encode()
        parsed = parse(data, len(data))
        try:
            if not is_valid(parsed):
                raise ValueError("invalid URL")
            href = get_href(parsed)
            return unpack(href.data, href.length).decode()
        finally:
            free(parsed)

    return serialise


_serialise = _load_serialiser()


def _shape_host(hostname: str) -> str:
    """The host as an entry: checked against ZIA's rules and, for IP literals, routability."""
    if hostname.startswith("["):
        return _ipv6_host(ipaddress.IPv6Address(hostname[1:-1]))
    host = hostname[:-1] if hostname.endswith(".") else hostname
    if host.rpartition(".")[2].isdigit():
        # A serialised host whose last label is a number is an IPv4 literal (URL Standard).
        address = ipaddress.IPv4Address(host)
        _require_global(address)
        return host
    problem = _host_problem(host)
    if problem:
        raise Rejected(problem)
    return host


def _ipv6_host(address: ipaddress.IPv6Address) -> str:
    _require_global(address)
    return address.compressed


def _require_global(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    # Blocking a private or special address in ZIA protects nothing and may break internal sites.
    if address.is_multicast:
        raise Skipped("multicast_address")
    if not address.is_global:
        raise Skipped("non_global_address")


def _host_problem(host: str) -> str | None:
    """Why a domain name (never an IP literal) cannot be a ZIA host, or None."""
    if len(host) <= MAX_HOST and _PLAIN_HOST.fullmatch(host):
        return None
    if not host:
        return "empty_host"
    if "*" in host:
        return "wildcard"
    if not host.isascii():
        return "non_ascii"
    if len(host) > MAX_HOST:
        return "host_too_long"
    labels = host.split(".")
    if len(labels) < 2:
        return "single_label"
    for label in labels:
        if not label:
            return "empty_label"
        if len(label) > MAX_LABEL:
            return "label_too_long"
        if not _LABEL.fullmatch(label):
            return "bad_host_character"
        if label == "_":
            return "underscore"
    if "_" in labels[-1] or (len(labels) > 2 and "_" in labels[-2]):
        return "underscore"
    return None


def _entry_problem(entry: str, path: str, port: str) -> str | None:
    """Why a URL entry breaks ZIA's rules, or None (its host is already checked)."""
    if port == "0":
        return "bad_port"  # no browser connects to port 0 (the Fetch Standard's bad ports)
    if len(entry) > MAX_ENTRY:
        return "too_long"
    if "*" in path:
        return "wildcard"
    if not (path.isascii() and path.isprintable()) or " " in path or not path:
        return "bad_path_character"  # printable ASCII (isprintable: 0x20-0x7e) but space
    return None
