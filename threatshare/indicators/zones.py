"""Which lists a host is on or under, as bit flags: one walk up its labels answers them all.

The extractor caches the flags of each host it meets, so every later decision about that host
is a dict look-up. Zones are the hosts of the lists; a host is *on or under* a zone when it is
the zone or a subdomain of it. IP literals have no parents: they match a zone exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from threatshare.indicators.rules import Rules

__all__ = [
    "ALLOWED",
    "COVERS",
    "ENDPOINT",
    "INVALID_HOST",
    "IP",
    "PROTECTED",
    "SUFFIX",
    "WRAPPER",
    "Zones",
    "build_zones",
    "is_ip",
    "zone_flags",
    "zones_of",
]

WRAPPER = 1  # a zone of data/wrappers.txt (its families still match the path)
ENDPOINT = 2  # a zone of data/protected_endpoints.txt
ALLOWED = 4  # the instance's allow list
PROTECTED = 8  # data/protected_hosts.txt and settings.protected_hosts
INVALID_HOST = 16  # not a list: the host fails is_valid_entry
SUFFIX = 32  # not a list: a public suffix or above one
COVERS = 64  # a parent of an allowed or protected host: no wildcard may stand here
IP = 128  # not a list: an IP literal

Zones = dict[str, int]


def build_zones(rules: Rules, allowed: Iterable[str]) -> Zones:
    """The zones of every list, each parent of an allowed or protected host marked COVERS."""
    zones: Zones = {}
    for host in rules.wrappers:
        zones[host] = zones.get(host, 0) | WRAPPER
    for host in rules.endpoints:
        zones[host] = zones.get(host, 0) | ENDPOINT
    shielded = [(host, PROTECTED) for host in rules.protected]
    shielded += [(host, ALLOWED) for host in allowed]
    for host, flag in shielded:
        zones[host] = zones.get(host, 0) | flag
        if not is_ip(host):
            dot = host.find(".")
            while dot >= 0:
                parent = host[dot + 1 :]
                zones[parent] = zones.get(parent, 0) | COVERS
                dot = host.find(".", dot + 1)
    return zones


def is_ip(host: str) -> bool:
    """Whether a shaped host is an IP literal (IPv6 has colons, IPv4 a numeric last label)."""
    return ":" in host or host.rpartition(".")[2].isdigit()


def zone_flags(host: str, zones: Zones) -> int:
    """The flags of every zone ``host`` is on or under (IP literals: exact match only);
    COVERS counts only for the host itself (it marks parents, not zones)."""
    flags = zones.get(host, 0)
    if ":" in host or host.rpartition(".")[2].isdigit():  # is_ip, without a call per new host
        return (flags & ~COVERS) | IP
    dot = host.find(".")
    while dot >= 0:
        found = zones.get(host[dot + 1 :])
        if found:
            flags |= found & ~COVERS
        dot = host.find(".", dot + 1)
    return flags


def zones_of(host: str, zones: Zones, flag: int) -> list[str]:
    """The zones with ``flag`` that ``host`` is on or under, nearest first."""
    found = [host] if zones.get(host, 0) & flag else []
    if is_ip(host):
        return found
    dot = host.find(".")
    while dot >= 0:
        parent = host[dot + 1 :]
        if zones.get(parent, 0) & flag:
            found.append(parent)
        dot = host.find(".", dot + 1)
    return found
