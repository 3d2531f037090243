"""The window of one run (docs/design.md#the-bookmark-and-the-window): ``[bookmark − overlap, now −
settle]``, clamped to Mimecast's retention; what fell out of the retention is reported as lost,
never silently skipped.

A window is worked in chunks of at most :data:`CHUNK_SPAN`, oldest first (:func:`chunks`), and
the bookmark moves after each fully shared chunk: a run cut short by its deadline (a long
outage, a 30-day first run) still makes progress, and the next run goes on from there.

The span adapts (:func:`next_span`): a run whose deadline stopped its first chunk (no progress
at all: one day's records take longer to pull than a run may) leaves the next run half the
span, down to :data:`CHUNK_FLOOR`; a run whose every chunk was pulled comfortably (in at most
:data:`COMFORT` of its pulling time) leaves the next one twice the span, up to
:data:`CHUNK_SPAN`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from threatshare.config import MIMECAST_RETENTION, Instance, Settings
from threatshare.state.store import InstanceState

#: The span of record times one chunk of a window covers, at most.
CHUNK_SPAN = timedelta(days=1)
#: The smallest span a chunk shrinks to (more than the default overlap, so a run still moves on).
CHUNK_FLOOR = timedelta(minutes=15)
#: The share of a run's pulling time a chunk may take and still count as pulled comfortably.
COMFORT = 0.5


@dataclass(frozen=True)
class Window:
    """The span of record times one run pulls: ``[start, end)``."""

    start: datetime
    end: datetime
    lost_from: datetime | None = None  # records older than Mimecast keeps, never to be shared


def window_for(state: InstanceState, inst: Instance, settings: Settings, now: datetime) -> Window:
    """The window of the next run, clamped to what Mimecast keeps
    (docs/design.md#the-bookmark-and-the-window)."""
    end = now - settings.settle
    start = state.bookmark - settings.overlap if state.bookmark else now - inst.fetch_from
    floor = now - MIMECAST_RETENTION
    if start >= floor:
        return Window(start, end)
    lost_from = state.bookmark if state.bookmark and state.bookmark < floor else None
    return Window(floor, end, lost_from)


def chunks(window: Window, span: timedelta = CHUNK_SPAN) -> list[Window]:
    """``window`` cut into consecutive chunks of at most ``span``, oldest first (the first
    carries the window's lost span). An empty window is one empty chunk."""
    if window.end <= window.start:
        return [window]
    pieces: list[Window] = []
    start = window.start
    while start < window.end:
        end = min(start + span, window.end)
        pieces.append(Window(start, end))
        start = end
    pieces[0] = replace(pieces[0], lost_from=window.lost_from)
    return pieces


def next_span(span: timedelta, *, stalled: bool, comfortable: bool) -> timedelta:
    """The chunk span of the next run: half when this one ``stalled`` (its first chunk was cut
    by the deadline), twice when every chunk was ``comfortable``, else the same."""
    if stalled:
        return max(CHUNK_FLOOR, span / 2)
    if comfortable:
        return min(CHUNK_SPAN, span * 2)
    return span
