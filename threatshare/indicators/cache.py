"""A cache of decisions bounded by the bytes it holds, not by its count of items.

Mimecast repeats the same URLs across clicks and recipients, so the extractor remembers what
it decided per URL, per sender and per host. Those keys come from upstream: a count bound lets
40,000 distinct 8 KB URLs hold 300 MB. Here a long key is kept as a 16-byte digest, every item
is charged for its key, its value's text and a fixed overhead, and the oldest items leave
first when the budget is reached (insertion order, no reordering on a hit, which keeps a hit
as cheap as a dict look-up; an ``OrderedDict`` pops its oldest item in constant time).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_BUDGET", "ByteBoundedCache"]

V = TypeVar("V")

#: Bytes a cache may hold by default: well under what a run may use (200 MB in all).
DEFAULT_BUDGET = 16 * 1024 * 1024
#: Keys longer than this are kept as their digest.
LONG_KEY = 128
#: What a dict slot, the key and value objects and a tuple cost beyond their text.
OVERHEAD = 240


class ByteBoundedCache(Generic[V]):
    """``get(key)`` answers from the cache or from ``compute(key)``, charged by ``size``."""

    def __init__(
        self,
        compute: Callable[[str], V],
        size: Callable[[V], int],
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        self._compute = compute
        self._size = size
        self._items: OrderedDict[str | bytes, tuple[V, int]] = OrderedDict()
        self.budget = budget
        #: Bytes charged for the items held now.
        self.charged = 0

    def __len__(self) -> int:
        return len(self._items)

    def __call__(self, key: str) -> V:
        slot: str | bytes = key
        if len(key) > LONG_KEY:
            slot = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        found = self._items.get(slot)
        if found is not None:
            return found[0]
        value = self._compute(key)
        cost = len(slot) + self._size(value) + OVERHEAD
        items = self._items
        while items and self.charged + cost > self.budget:
            self.charged -= items.popitem(last=False)[1][1]
        if cost <= self.budget:
            items[slot] = (value, cost)
            self.charged += cost
        return value
