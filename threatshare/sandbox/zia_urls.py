"""ZIA's rules for the entries of a custom URL category (docs/design.md#entries, URL format
guidelines).

An entry is ``host[:port][/path]`` without a scheme, lower case, ASCII only, at most 1,024
characters; a host of at most 255 characters in labels of at most 63; a leading ``.`` makes
the entry a wildcard over the domain and its subdomains; ``*`` and bare top-level domains are
not allowed; an underscore may not appear in the TLD, nor in the second-level label when there
is a subdomain; IPv4 and IPv6 literals are accepted (IPv6 host-level only, as ZIA shows them).
"""

from __future__ import annotations

import ipaddress
import re

MAX_ENTRY = 1024
MAX_HOST = 255
MAX_LABEL = 63

_LABEL = re.compile(r"[a-z0-9_-]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def entry_problem(entry: object) -> str | None:
    """Why ZIA refuses ``entry`` as a URL of a custom category, or None when it accepts it."""
    if not isinstance(entry, str) or not entry:
        return "empty or not a string"
    if len(entry) > MAX_ENTRY:
        return f"longer than {MAX_ENTRY} characters"
    if not _PRINTABLE.fullmatch(entry):
        return "non-ASCII, blank or control characters"
    if "://" in entry:
        return "a scheme is not allowed"
    if "*" in entry:
        return "'*' is not allowed"
    if entry != entry.lower():
        return "upper-case characters are not allowed"
    authority, _, _path = entry.partition("/")
    if authority.count(":") >= 2:
        return _ipv6_problem(entry)
    host, colon, port = authority.partition(":")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        return "invalid port"
    return _host_problem(host)


def _ipv6_problem(entry: str) -> str | None:
    try:
        ipaddress.IPv6Address(entry)
    except ValueError:
        return "invalid IPv6 address (host-level entries only)"
    return None


def _host_problem(host: str) -> str | None:
    wildcard = host.startswith(".")
    if wildcard:
        host = host[1:]
    if not host:
        return "no host"
    if len(host) > MAX_HOST:
        return f"host longer than {MAX_HOST} characters"
    labels = host.split(".")
    if any(not label for label in labels):
        return "empty label in host"
    for label in labels:
        if len(label) > MAX_LABEL:
            return f"host label longer than {MAX_LABEL} characters"
        if not _LABEL.fullmatch(label) or label == "_":
            return "invalid character in host"
    if len(labels) < 2:
        return "a top-level domain alone is not allowed"
    if labels[-1].isdigit():
        if wildcard or len(labels) != 4 or not _is_ipv4(host):
            return "invalid IPv4 address or numeric top-level domain"
        return None
    if "_" in labels[-1] or (len(labels) > 2 and "_" in labels[-2]):
        return "underscore in the top-level or second-level domain"
    return None


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True
