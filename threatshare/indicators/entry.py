"""The entry an operator means: a URL, a host or an entry as ZIA shows it (``unblock``,
``explain``), read the way a Mimecast record is read (docs/design.md#entries)."""

from __future__ import annotations

from threatshare.indicators.normalise import Rejected, Skipped, normalise_host, split_url


class NotAnEntry(ValueError):
    """A command-line argument that cannot be an entry of a category."""


def entry_of(argument: str) -> str:
    """The category entry an operator means by ``argument``: a URL, a host or a ZIA entry."""
    text = argument.strip()
    try:
        if text.startswith("."):
            return "." + normalise_host(text[1:])
        parts = split_url(text)
    except (Rejected, Skipped) as exc:
        raise NotAnEntry(f"{argument!r} is not an entry of a category ({exc.reason})") from None
    if parts.entry is None:
        raise NotAnEntry(f"{argument!r} is not an entry of a category ({parts.problem})")
    return parts.entry
