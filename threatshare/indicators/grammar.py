"""ZIA's format rules for an entry of a custom URL category (docs/design.md#limits-of-zia),
written on their own rather than derived from the shaping code in
:mod:`threatshare.indicators.normalise`, so that each checks the other: the extractor's last
guard (an invalid entry makes ZIA refuse a whole request), and the oracle of property tests.

:func:`is_valid_entry` judges any text. :func:`is_valid_entry_on` gives the same answer for an
entry made of a host already found valid and what follows it (a port, a path), checking only
what follows: the extractor knows each host's validity (a cached host flag), so a URL entry
costs one small match instead of a second walk over its host. :func:`is_valid_host` is
:func:`is_valid_entry` for a host, the usual one in one match.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "MAX_ENTRY",
    "MAX_HOST",
    "MAX_LABEL",
    "is_valid_entry",
    "is_valid_entry_on",
    "is_valid_host",
]

MAX_ENTRY = 1024
MAX_HOST = 255
MAX_LABEL = 63

# Path characters: printable ASCII except upper case, '#', '*' and '?'.
_V_LABEL = r"[a-z0-9_-]{1,63}"
_V_HOST = rf"(?:{_V_LABEL}\.)+{_V_LABEL}"
_V_PORT = r"[1-9][0-9]{0,4}"
_V_PATH = r"/[\x21\x22\x24-\x29\x2b-\x3e\x40\x5b-\x7e]+"
_VALID_URL = re.compile(rf"(?P<host>{_V_HOST})(?::(?P<port>{_V_PORT}))?(?:{_V_PATH})?")
_VALID_AFTER_HOST = re.compile(rf"(?::(?P<port>{_V_PORT}))?(?:{_V_PATH})?")
_AFTER_HOST = ("", ":", "/")  # what may follow a host in ``host[:port][/path]``
_VALID_DOMAIN = re.compile(rf"\.(?P<host>{_V_HOST})")
# The usual host: labels without underscore, the last one not all digits (not an address).
_USUAL_NAME = re.compile(r"(?:[a-z0-9-]{1,63}\.)+(?=[a-z0-9-]{0,62}[a-z-])[a-z0-9-]{1,63}")
_V_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_VALID_IPV4 = re.compile(rf"{_V_OCTET}(?:\.{_V_OCTET}){{3}}")


def is_valid_entry(entry: str) -> bool:
    """Whether ``entry`` follows ZIA's rules for a custom-category URL, however it was made.

    ASCII printable, lower case, at most 1,024 characters; no scheme, ``*``, whitespace, query
    or fragment; a host of at most 255 characters in labels of 1..63 ``[a-z0-9_-]`` (two labels
    or more, underscore not in the TLD, nor in the SLD when there is a subdomain, nor alone),
    or a dotted-quad IPv4; an optional port; an optional path other than ``/``. Besides:
    ``.domain`` (the domain and its subdomains) with nothing after it, and a compressed IPv6
    literal alone.
    """
    if not isinstance(entry, str) or len(entry) > MAX_ENTRY:
        return False
    match = _VALID_URL.fullmatch(entry)
    if match is not None:
        host, port = match.group("host", "port")
        if port is not None and int(port) > 65535:
            return False
        return _is_valid_host(host, ip_allowed=True)
    match = _VALID_DOMAIN.fullmatch(entry)
    if match is not None:
        return _is_valid_host(match["host"], ip_allowed=False)
    if ":" in entry and "%" not in entry:
        try:
            return ipaddress.IPv6Address(entry).compressed == entry
        except ValueError:
            return False
    return False


def is_valid_host(host: str) -> bool:
    """``is_valid_entry(host)``, the usual host in one match: a name of labels ``[a-z0-9-]``
    whose last is not all digits passes every rule ``_is_valid_host`` applies to a host."""
    if len(host) <= MAX_HOST and _USUAL_NAME.fullmatch(host):
        return True
    return is_valid_entry(host)


def is_valid_entry_on(valid_host: str, entry: str) -> bool:
    """``is_valid_entry(entry)``, for an ``entry`` that starts with ``valid_host`` or is the
    wildcard over it, ``valid_host`` passing :func:`is_valid_entry` on its own (the caller's
    word: it is not checked again).

    A bare valid host (no colon, slash or leading dot) is a host of ``_VALID_URL`` that
    ``_is_valid_host`` accepts, made of characters other than ``:`` and ``/``. When the rest
    of the entry is empty or starts with one of those, the pattern's host in ``host + rest`` is
    that host, so the entry is valid exactly when ``rest`` is a valid port and path and the
    whole fits ZIA's length (nor can such an entry read as an IPv6 literal: its first group has
    a dot). Anything else is checked whole.
    """
    end = len(valid_host)
    if not _is_bare(valid_host):
        return is_valid_entry(entry)
    if entry[end : end + 1] not in _AFTER_HOST or not entry.startswith(valid_host):
        if entry[:1] == "." and entry[1:] == valid_host:
            # The wildcard over it: valid unless the host is an IPv4 literal (_is_valid_host
            # refuses a numeric last label when ip_allowed is False, and nothing else more).
            return not valid_host[valid_host.rfind(".") + 1 :].isdigit()
        return is_valid_entry(entry)
    if len(entry) > MAX_ENTRY:
        return False
    match = _VALID_AFTER_HOST.fullmatch(entry, end)
    if match is None:
        return False
    port = match["port"]
    return port is None or int(port) <= 65535


def _is_bare(host: str) -> bool:
    return ":" not in host and "/" not in host and not host.startswith(".")


def _is_valid_host(host: str, *, ip_allowed: bool) -> bool:
    if len(host) > MAX_HOST:
        return False
    if host[host.rfind(".") + 1 :].isdigit():
        # A numeric TLD means an IPv4 literal; ".1.2.3.4" would be a wildcard over an address.
        return ip_allowed and _VALID_IPV4.fullmatch(host) is not None
    if "_" in host:
        labels = host.split(".")
        if "_" in labels or "_" in labels[-1] or (len(labels) > 2 and "_" in labels[-2]):
            return False
    return True
