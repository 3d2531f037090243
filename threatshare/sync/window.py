"""The window of one run (S5): ``[bookmark − overlap, now − settle]``, clamped to Mimecast's
retention; what fell out of the retention is reported as lost, never silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from threatshare.config import MIMECAST_RETENTION, Instance, Settings
from threatshare.state.store import InstanceState


@dataclass(frozen=True)
class Window:
    """The span of record times one run pulls: ``[start, end)``."""

    start: datetime
    end: datetime
    lost_from: datetime | None = None  # records older than Mimecast keeps, never to be shared


def window_for(state: InstanceState, inst: Instance, settings: Settings, now: datetime) -> Window:
    """The window of the next run, clamped to what Mimecast keeps (S5)."""
    end = now - settings.settle
    start = state.bookmark - settings.overlap if state.bookmark else now - inst.fetch_from
    floor = now - MIMECAST_RETENTION
    if start >= floor:
        return Window(start, end)
    lost_from = state.bookmark if state.bookmark and state.bookmark < floor else None
    return Window(floor, end, lost_from)
