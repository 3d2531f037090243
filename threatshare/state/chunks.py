"""The bound on the entries one Redis write carries (docs/design.md#capacity).

A write of every entry at once fails at the sizes a fleet meets: Lua's ``unpack`` stops near
8,000 values (a fenced ``ZREM`` of 10,000 entries dies inside Redis), and one huge command or
pipeline holds Redis and the client's memory for as long as it takes. Every write that carries
entries is cut into calls of at most :data:`WRITE_CHUNK`, so any operation works at 100,000
entries and beyond.

A chunk of entries often travels as one argument, one entry a line (the client's cost is per
argument): :func:`check_lines` refuses what a script would misread, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TypeVar

#: Entries one Redis call (a command, a Lua script or a pipeline) carries at most.
WRITE_CHUNK = 1000

T = TypeVar("T")
V = TypeVar("V")


def chunked(items: Iterable[T], size: int = WRITE_CHUNK) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, in order."""
    if size < 1:
        raise ValueError("size must be at least 1")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def chunked_map(mapping: Mapping[T, V], size: int = WRITE_CHUNK) -> Iterator[dict[T, V]]:
    """``mapping`` in dicts of at most ``size`` items, in order."""
    for keys in chunked(mapping, size):
        yield {k: mapping[k] for k in keys}


def check_lines(texts: Iterable[str]) -> None:
    """Raise ValueError for an empty text or one holding a line break: sent one a line, it
    would be read as none or as two, and shift every text after it. Text by text, so a check
    of a whole pull's entries and their provenance allocates nothing."""
    for text in texts:
        if not text or "\n" in text:
            raise ValueError("an empty entry or one with a line break cannot be recorded")
