"""The garbage collector's pace in a threatshare process (docs/design.md#performance).

A pull makes a few small objects per Mimecast record (a tuple of entries, a sighting), nearly
all freed by reference counting the moment they are done with. CPython's default runs its
young-generation collector every 700 container allocations: in a pull that is every hundred
records or so, each time walking objects that are not garbage, for about a fifth of the pull's
time. A threatshare process collects less often; cyclic garbage, which is rare here, waits a
little longer.
"""

from __future__ import annotations

import gc

#: Container allocations between two young-generation collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def pace_collector() -> None:
    """Collect the young generation every :data:`YOUNG_THRESHOLD` allocations (never more
    often than the process already does); the older generations keep their pace."""
    young, older, oldest = gc.get_threshold()
    if young != 0:  # 0: the collector is off, and stays so
        gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)
