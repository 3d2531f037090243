"""A cache of decisions bounded by the bytes it holds, not by its count of items.

Mimecast repeats the same URLs across clicks and recipients, so the extractor remembers what
it decided per URL, per sender and per host. Those keys come from upstream: a count bound lets
40,000 distinct 8 KB URLs hold 300 MB. Here a long key is kept as a 16-byte digest, every item
is charged for its key, its value's text and a fixed overhead, and the oldest items leave
first when the budget is reached.

The hot path is a hit on a short key: :attr:`ByteBoundedCache.items` is a plain dict that a
caller may read directly (``items.get(key)``) before calling the cache, which costs no more
than a dict look-up. Items are only ever added on a miss, so a queue of slots in insertion
order is the eviction order. An item's cost is worked out again when it leaves rather than
kept beside it (it depends on the slot and the value alone): a miss then appends one object
to the queue, and each item holds less memory.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_BUDGET", "LONG_KEY", "ByteBoundedCache"]

V = TypeVar("V")

#: Bytes a cache may hold by default: well under what a run may use (200 MB in all).
DEFAULT_BUDGET = 16 * 1024 * 1024
#: Keys longer than this are kept as their digest.
LONG_KEY = 128
#: What a dict slot, the key and value objects, a tuple and the queue cost beyond their text.
OVERHEAD = 240


class ByteBoundedCache(Generic[V]):
    """``cache(key)`` answers from the cache or from ``compute(key)``, charged by ``size``
    (None: a value costs nothing beyond the fixed overhead, as a small int)."""

    def __init__(
        self,
        compute: Callable[[str], V],
        size: Callable[[V], int] | None,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        self._compute = compute
        self._size = size
        #: slot (the key, or a long key's digest) -> value; read it directly for a fast hit.
        self.items: dict[str | bytes, V] = {}
        self._order: deque[str | bytes] = deque()  # slots, oldest first
        self.budget = budget
        #: Bytes charged for the items held now.
        self.charged = 0

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, key: str) -> V:
        slot: str | bytes = key
        if len(key) > LONG_KEY:
            slot = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        found = self.items.get(slot)
        if found is not None:
            return found
        return self._store(slot, self._compute(key))

    def missed(self, key: str) -> V:
        """The value of a key the caller just failed to find in :attr:`items` (a short key
        is its own slot, so it is not looked up again)."""
        if len(key) > LONG_KEY:
            return self(key)
        return self._store(key, self._compute(key))

    def _store(self, slot: str | bytes, value: V) -> V:
        """Keep ``value`` under ``slot`` (a short key itself, or a long key's digest) and return
        it."""
        size = self._size
        cost = len(slot) + OVERHEAD if size is None else len(slot) + size(value) + OVERHEAD
        if cost > self.budget:
            return value
        charged = self.charged + cost
        if charged > self.budget:
            charged = self._evict_down_to(self.budget - cost) + cost
        self.items[slot] = value
        self._order.append(slot)
        self.charged = charged
        return value

    def _evict_down_to(self, room: int) -> int:
        """Drop the oldest items until at most ``room`` bytes are charged; the new charge."""
        items, order, size = self.items, self._order, self._size
        charged = self.charged
        while order and charged > room:
            oldest = order.popleft()
            value = items.pop(oldest)
            charged -= len(oldest) + OVERHEAD + (0 if size is None else size(value))
        self.charged = charged
        return charged
