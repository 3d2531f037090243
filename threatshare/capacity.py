"""Room in a ZIA tenant's custom-URL quota (docs/design.md#capacity), as pure arithmetic.

The quota (25,000 unique URLs by default) is shared by every custom category of the tenant,
the admins' own included. An instance may hold its *capacity*: its own entries plus what the
tenant has left, less the tenant's ``quota_reserve``, and at most ``max_entries``. When new
threats do not fit, the newest win: the instance's own least recently seen entries are evicted
to make room, and what is still older than everything kept is skipped (``capacity``).

The quota warning (docs/design.md#alerts) fires once when use crosses ``quota_warn`` and is re-armed
only when use falls :data:`REARM_POINTS` below it, so a tenant hovering at the threshold sends one
e-mail, not one per run. Nothing here reads Redis or ZIA: the callers bring the figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Points below ``quota_warn`` that use must fall to before a new crossing warns again.
REARM_POINTS = 5
#: How far back the fill forecast looks for the rate at which the quota is used.
FORECAST_SPAN = timedelta(days=7)


def reserve_slots(reserve: int | str, quota_total: int) -> int:
    """Slots ``quota_reserve`` keeps free: a count as it is, ``"N%"`` of the quota rounded up."""
    if isinstance(reserve, int):
        return reserve
    share = float(reserve.rstrip("%").strip())
    return math.ceil(quota_total * share / 100)


def capacity(*, own: int, remaining: int, reserve: int, max_entries: int | None) -> int:
    """How many entries the instance may hold: its ``own`` plus the tenant's ``remaining``, less
    ``reserve``, at most ``max_entries``; never negative."""
    room = own + remaining - reserve
    if max_entries is not None:
        room = min(room, max_entries)
    return max(0, room)


def excess(*, own: int, new: int, cap: int) -> int:
    """How many entries must go (evicted or skipped) so ``own`` plus ``new`` fit in ``cap``."""
    return max(0, own + new - cap)


@dataclass(frozen=True)
class Losers:
    """Who gives way: own entries to evict and new ones to skip, least recently seen first."""

    evict: list[str]
    skip: list[str]


def least_recent(
    own_oldest: Sequence[tuple[str, float]], new_oldest: Sequence[tuple[str, float]], count: int
) -> Losers:
    """The ``count`` least recently seen of the union of own and new entries.

    Both inputs are (entry, last seen) sorted oldest first, each at least ``count`` long or
    complete. On a tie the new entry gives way: the one already in the category stays, which
    costs no call."""
    evict: list[str] = []
    skip: list[str] = []
    i = j = 0
    while len(evict) + len(skip) < count and (i < len(own_oldest) or j < len(new_oldest)):
        take_new = j < len(new_oldest) and (
            i >= len(own_oldest) or new_oldest[j][1] <= own_oldest[i][1]
        )
        if take_new:
            skip.append(new_oldest[j][0])
            j += 1
        else:
            evict.append(own_oldest[i][0])
            i += 1
    return Losers(evict, skip)


def percent_used(used: int, remaining: int) -> float:
    total = used + remaining
    return 100.0 if total <= 0 else 100.0 * used / total


@dataclass(frozen=True)
class WarningState:
    """Whether the next crossing warns, and how many crossings warned so far (names the
    incident, so every worker of the fleet names the same crossing the same way)."""

    armed: bool = True
    crossings: int = 0


def quota_warning(percent: float, warn_at: int, state: WarningState) -> tuple[bool, WarningState]:
    """(send a warning now?, the state after) for a reading of ``percent`` used."""
    if state.armed and percent >= warn_at:
        return True, WarningState(armed=False, crossings=state.crossings + 1)
    if not state.armed and percent < warn_at - REARM_POINTS:
        return False, WarningState(armed=True, crossings=state.crossings)
    return False, state


def fill_forecast(
    readings: Iterable[tuple[float, int]], quota_total: int, now: datetime
) -> datetime | None:
    """When the quota fills at the rate of the readings (epoch seconds, used) of the last
    :data:`FORECAST_SPAN`; None when use is not growing or there is too little history."""
    since = (now - FORECAST_SPAN).timestamp()
    recent = sorted((at, used) for at, used in readings if at >= since)
    if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
        return None
    (first_at, first_used), (last_at, last_used) = recent[0], recent[-1]
    rate = (last_used - first_used) / (last_at - first_at)  # URLs per second
    if rate <= 0:
        return None
    left = max(0, quota_total - last_used)
    return datetime.fromtimestamp(last_at + left / rate, UTC)


def daily_rate(readings: Iterable[tuple[float, int]], now: datetime) -> float | None:
    """URLs a day the tenant's use grew by over :data:`FORECAST_SPAN` (None: too little data)."""
    since = (now - FORECAST_SPAN).timestamp()
    recent = sorted((at, used) for at, used in readings if at >= since)
    if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
        return None
    return (recent[-1][1] - recent[0][1]) * 86_400 / (recent[-1][0] - recent[0][0])
