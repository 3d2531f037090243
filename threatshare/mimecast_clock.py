"""Mimecast's clock: the product's clock corrected by what Mimecast's answers say the time is.

Mimecast stamps the records, so the "now" that ends a run's window and counts expiry is
Mimecast's (docs/design.md#mimecasts-clock). Every answer of Mimecast carries a ``Date``
header; :class:`MimecastClock` keeps the offset it shows against the product's own clock (the
caller's, an input like every clock of threatshare), per Mimecast account, and reads
``now`` as the product's clock plus that offset.

The offset is kept in the process, not in Redis: it is the difference between Mimecast's clock
and *this* process's clock, and each worker of a fleet has a clock of its own, so one worker's
offset applied to another's clock would be wrong by their difference. A reading is trusted to
decide a window only while it is :meth:`fresh` (recent, and the product's clock has not jumped
since); otherwise the run asks Mimecast first.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

log = structlog.get_logger(__name__)

#: A skew beyond this many seconds is logged (once per incident) and shown in status.
SKEW_WARNING = 60
#: A reading older than this (seconds, by the monotonic clock) is read again before a window.
MAX_AGE = 600.0
#: The product's clock moved this much more or less than the monotonic clock since a reading:
#: it was set (a jump), and the offset no longer holds.
JUMP = 5.0

#: The Mimecast account whose clock ``now`` reads in this context (a run binds its own).
_ACCOUNT: ContextVar[str | None] = ContextVar("mimecast_account", default=None)


@dataclass(frozen=True)
class Reading:
    """One offset read from a ``Date`` header, and when it was read."""

    offset: timedelta  # Mimecast's clock minus the product's, in whole seconds
    local_at: datetime  # the product's clock when it was read
    monotonic_at: float  # the monotonic clock when it was read

    @property
    def skew_seconds(self) -> int:
        """How far the product's clock is ahead of Mimecast's (behind when negative)."""
        return -int(self.offset.total_seconds())


def parse_date_header(value: str | None) -> datetime | None:
    """The time an HTTP ``Date`` header says, aware; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else None


class MimecastClock:
    """The product's clock, corrected per Mimecast account by the offsets read from answers."""

    def __init__(self, local: Callable[[], datetime], monotonic: Callable[[], float]) -> None:
        self.local = local
        self.monotonic = monotonic
        self._readings: dict[str, Reading] = {}
        self._latest: Reading | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, account: str, date_header: str | None, latency: float = 0.0) -> None:
        """Take the ``Date`` of an answer of ``account`` that took ``latency`` seconds. The
        header has whole seconds and was stamped somewhere during the exchange: the best
        guess of Mimecast's time is the middle of its second at the middle of the exchange."""
        said = parse_date_header(date_header)
        if said is None:
            return
        local_now = self.local()
        middle = local_now - timedelta(seconds=max(0.0, latency) / 2)
        seconds = (said - middle).total_seconds() + 0.5
        if not math.isfinite(seconds):
            return
        reading = Reading(timedelta(seconds=round(seconds)), local_now, self.monotonic())
        with self._lock:
            self._readings[account] = self._latest = reading
            skewed = abs(reading.skew_seconds) > SKEW_WARNING
            first = skewed and account not in self._warned
            if skewed:
                self._warned.add(account)
            else:
                self._warned.discard(account)  # the incident is over: the next one is logged
        if first:
            log.warning(
                "clock.skew",
                mimecast=account,
                skew_seconds=reading.skew_seconds,
                detail="this worker's clock differs from Mimecast's; Mimecast's is used",
            )

    def reading(self, account: str) -> Reading | None:
        with self._lock:
            return self._readings.get(account)

    def fresh(self, account: str) -> bool:
        """Whether this process read ``account``'s clock recently enough to decide a window on:
        within :data:`MAX_AGE`, and with no jump of the product's clock since."""
        reading = self.reading(account)
        if reading is None:
            return False
        elapsed = self.monotonic() - reading.monotonic_at
        moved = (self.local() - reading.local_at).total_seconds()
        return 0 <= elapsed <= MAX_AGE and abs(moved - elapsed) <= JUMP

    def now(self, account: str | None = None) -> datetime:
        """Mimecast's now for ``account`` (default: the bound one): the product's clock plus
        the latest offset read for it, else the latest of any account, else no correction."""
        account = account or _ACCOUNT.get()
        with self._lock:
            reading = self._readings.get(account) if account else None
            reading = reading or self._latest
        local_now = self.local()
        return local_now if reading is None else local_now + reading.offset

    def __call__(self) -> datetime:
        return self.now()

    @contextlib.contextmanager
    def bound(self, account: str) -> Iterator[None]:
        """``now()`` reads ``account``'s clock inside the block (one run of one instance)."""
        token = _ACCOUNT.set(account)
        try:
            yield
        finally:
            _ACCOUNT.reset(token)
