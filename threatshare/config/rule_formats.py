"""The forms of the rule additions a configuration may make to what is never blocked
(docs/design.md#what-is-never-blocked): only their shape is checked here; what they mean is
:mod:`threatshare.indicators`' business.
"""

from __future__ import annotations

import re

#: A host of a rule line: a name (``*`` allowed in a label) or an IPv6 literal.
HOST_PART = r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_-]+)+|[0-9a-fA-F:]*:[0-9a-fA-F:]+"
ENDPOINT_LINE = re.compile(rf"(?:{HOST_PART})(?:/[^\s/?#]+)+")
WRAPPER_LINE = re.compile(
    rf"(?:{HOST_PART})(?:/[^\s/?#]+)*\s+(?:query:[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*|path:[0-9]|opaque)"
)
# An allow entry is a host, a URL or a ZIA entry; a range or a pattern is none of them.
CIDR = re.compile(r"\[?[0-9A-Fa-f.:]+\]?/[0-9]{1,3}")


def allow_problem(entry: str) -> str | None:
    """Why an ``allow`` entry is not a host, a URL or a ZIA entry, or None."""
    text = entry.strip()
    if not text:
        return "an empty entry allows nothing; remove it"
    if "*" in text:
        return (
            f"{entry!r}: '*' is not an entry; a host already covers its subdomains "
            "(write 'partner.example' for '*.partner.example')"
        )
    if CIDR.fullmatch(text.removeprefix("http://").removeprefix("https://")):
        return (
            f"{entry!r} is an address range; allow takes a host, a URL or a ZIA entry "
            "(list the addresses one by one)"
        )
    return None
