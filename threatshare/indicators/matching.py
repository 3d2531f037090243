"""Which category entries block a request, the way ZIA matches them
(docs/design.md#provenance-and-audit).

ZIA compares the URL a user requests with each entry of a custom category:

- ``host`` matches that host on any port and any path under it;
- ``host:port`` matches that host on that port, any path;
- ``.domain`` (the wildcard) matches the domain itself and every host under it;
- ``host[:port]/path`` matches that host and every path that starts with ``path``.

The question "which entries block this URL?" is answered without reading a whole category: the
entries that could block a given request are few (one per parent domain, one per prefix of its
path), so they are listed here and looked up by name.
"""

from __future__ import annotations

import ipaddress

#: A path longer than an entry may be (ZIA's limit) cannot be blocked by a longer prefix.
MAX_ENTRY = 1024


def split_entry(entry: str) -> tuple[str, str | None, str]:
    """(host, port, path) of an entry in ZIA's form; ``path`` is "" for a host-level entry.
    The wildcard's leading dot stays on the host."""
    authority, slash, rest = entry.partition("/")
    path = slash + rest if slash else ""
    if authority.count(":") >= 2:  # an IPv6 literal: host-level only
        return authority, None, path
    host, colon, port = authority.partition(":")
    return host, (port if colon else None), path


def blockers(target: str) -> list[str]:
    """Every entry that would block a request for ``target`` (an entry-shaped URL:
    ``host[:port][/path]``), most specific first."""
    host, port, path = split_entry(target)
    authority = f"{host}:{port}" if port else host
    found: list[str] = []
    # Path prefixes, longest first: "h/a/b" is blocked by "h/a/b", "h/a/", "h/a", "h/".
    for end in range(min(len(path), MAX_ENTRY), 1, -1):
        found.append(authority + path[:end])
    if port:
        found.append(authority)
    found.append(host)
    if not _is_ip(host):  # no wildcard covers an IP literal
        labels = host.split(".")
        found.extend("." + ".".join(labels[i:]) for i in range(len(labels)))
    return found


def blocks(entry: str, target: str) -> bool:
    """Whether ``entry`` blocks a request for ``target`` under ZIA's matching."""
    host, port, path = split_entry(entry)
    t_host, t_port, t_path = split_entry(target)
    if host.startswith("."):
        domain = host[1:]
        return t_host == domain or t_host.endswith(host)
    if t_host != host or (port is not None and t_port != port):
        return False
    return not path or t_path.startswith(path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
