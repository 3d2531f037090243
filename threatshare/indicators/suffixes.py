"""Public suffixes: where anyone can register a name (``co.uk``, ``github.io``,
``s3.amazonaws.com``), so that no host-level or wildcard entry may stand there or above.

The Public Suffix List, ICANN and private sections, comes from the ``publicsuffixlist``
package, which ships the list inside it: nothing is fetched at run time, and an upgrade of the
package brings a newer list (its ``VERSION`` line is shown by ``check`` and is part of the
rules' digest, so an upgrade re-judges what the category holds).

Two questions are asked, both of a host already shaped (ASCII, lower case):

- :func:`registrable_domain`: the name one party registered (``mail.evil.example`` →
  ``evil.example``), or None for a public suffix itself: the list's own algorithm over sets
  built once (a few set look-ups per name), held to the list's meaning by its own test vectors
  (``tests/indicators/data/test_psl.txt``).
- :func:`at_or_above_suffix`: whether the host is a public suffix, or a parent of one
  (``amazonaws.com`` is above ``s3.amazonaws.com``). One set look-up on the hot path: the set
  holds every rule and every parent of a rule; wildcard rules (``*.ck``) are checked against the
  host's parent, with their exceptions (``!www.ck``).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import publicsuffixlist

__all__ = ["SuffixList", "at_or_above_suffix", "registrable_domain", "suffix_list"]


class SuffixList:
    """The rules of the list, indexed for the two questions of this module."""

    def __init__(self, text: str) -> None:
        self.version = "unknown"
        above: set[str] = set()
        plain: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        rules = 0
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("// VERSION:"):
                self.version = line.partition(":")[2].strip()
            if not line or line.startswith("//"):
                continue
            rule = _ascii(line.split()[0].lower())
            rules += 1
            if rule.startswith("!"):
                exceptions.add(rule[1:])
                continue
            if rule.startswith("*."):
                rule = rule[2:]
                wildcards.add(rule)
            # A wildcard's base is read as a suffix too (``nom.br`` under ``*.nom.br``), as the
            # package reads it: the stricter reading, for names no one should block whole.
            plain.add(rule)
            labels = rule.split(".")
            above.update(".".join(labels[i:]) for i in range(len(labels)))
        self.rules = rules
        self.digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self._above = frozenset(above)
        self._plain = frozenset(plain)
        self._wildcards = frozenset(wildcards)
        self._exceptions = frozenset(exceptions)

    def at_or_above(self, host: str) -> bool:
        """Whether ``host`` is a public suffix or a parent of one (see the module)."""
        if host in self._above:
            return True
        parent = host.partition(".")[2]
        return parent in self._wildcards and host not in self._exceptions

    def registrable(self, name: str) -> str | None:
        """The registrable domain of ``name`` (any case, Unicode or ASCII), or None when
        ``name`` is a public suffix, has an empty label or is not a domain name at all."""
        if not name or name.startswith(".") or ".." in name or name.endswith("."):
            return None
        host = _ascii(name.lower())
        if not host or "." not in host:
            return None
        # Candidates from the whole name down to its last label; the first that a rule makes
        # a public suffix is the longest match (an exception names the label above its suffix).
        candidates = [host]
        dot = host.find(".")
        while dot >= 0:
            candidates.append(host[dot + 1 :])
            dot = host.find(".", dot + 1)
        found = len(candidates) - 1  # no rule: the last label alone (the list's default "*")
        for index, candidate in enumerate(candidates):
            if candidate in self._exceptions:
                found = index + 1
                break
            if candidate in self._plain or candidate.partition(".")[2] in self._wildcards:
                found = index
                break
        return candidates[found - 1] if found > 0 else None


@cache
def suffix_list() -> SuffixList:
    """The list shipped with the installed ``publicsuffixlist`` package."""
    return SuffixList(Path(publicsuffixlist.PSLFILE).read_text("utf-8"))


def registrable_domain(name: str) -> str | None:
    """The registrable domain of ``name`` under the shipped list (None: none)."""
    return suffix_list().registrable(name)


def at_or_above_suffix(host: str) -> bool:
    """Whether a shaped host is a public suffix or above one under the shipped list."""
    return suffix_list().at_or_above(host)


def _ascii(name: str) -> str:
    if name.isascii():
        return name
    try:
        return ".".join(
            label.encode("idna").decode() if label and not label.isascii() else label
            for label in name.split(".")
        )
    except UnicodeError:
        return ""
