"""``run --once`` progress for people: bars on a terminal (tqdm), plain lines otherwise.

It turns the pipeline's :class:`~threatshare.progress.RunProgress` events into a display on
stderr (stdout keeps the summary). The ETA of a push is bound by ZIA's rate: ``N`` entries take
``⌈N / batch_size⌉`` calls, and ZIA's per-second and hourly limits say how long those take at
best, which for a large backlog is far longer than the network would.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

from threatshare.durations import format_duration
from threatshare.progress import ProgressSink, RunProgress
from threatshare.zia.ratelimit import default_limits, least_seconds

#: A plain line at least this often during a long phase (seconds).
PLAIN_EVERY = 10.0
#: ZIA's limits of the call that adds a batch to a category.
PUSH_LIMITS = default_limits("PUT", "/urlCategories/{id}")


def push_eta(event: RunProgress) -> float:
    """The least time the rest of a push takes at ZIA's rate (seconds)."""
    calls = math.ceil(max(0, event.to_push - event.pushed) / max(1, event.batch_size))
    return least_seconds(calls, PUSH_LIMITS)


def _eta_text(event: RunProgress) -> str:
    return format_duration(timedelta(seconds=push_eta(event)))


def _pull_text(event: RunProgress) -> str:
    return f"{event.pages} pages, {event.records} records, {event.staged} new entries staged"


class BarProgress:
    """One tqdm bar per instance and phase: pages while pulling, entries while pushing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bars: dict[str, tuple[str, tqdm]] = {}

    def _size(self) -> tuple[int, int]:
        # A terminal that reports no size (0x0, e.g. a fresh pseudo-terminal) would get empty
        # bars from tqdm: fall back to $COLUMNS/$LINES or 80x24.
        try:
            size = os.get_terminal_size(self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        fallback = shutil.get_terminal_size()
        return size.columns or fallback.columns, size.lines or fallback.lines

    def _bar(self, event: RunProgress) -> tqdm:
        current = self._bars.get(event.instance)
        if current is not None and current[0] == event.phase:
            return current[1]
        if current is not None:
            current[1].close()
        pushing = event.phase == "pushing"
        columns, lines = self._size()
        bar = tqdm(
            total=event.to_push if pushing else None,
            desc=f"{event.instance} {'pushing' if pushing else 'pulling'}",
            unit="entry" if pushing else "page",
            file=self._stream,
            ncols=columns,
            nrows=lines,
            leave=True,
        )
        self._bars[event.instance] = (event.phase, bar)
        return bar

    def __call__(self, event: RunProgress) -> None:
        if event.phase == "done":
            current = self._bars.pop(event.instance, None)
            if current is not None:
                current[1].close()
            return
        bar = self._bar(event)
        if event.phase == "pulling":
            bar.n = event.pages
            bar.set_postfix_str(f"{event.records} records, {event.staged} staged", refresh=False)
        else:
            bar.n = event.pushed
            bar.set_postfix_str(f"ZIA's rate: ≥{_eta_text(event)} left", refresh=False)
        bar.refresh()


class PlainProgress:
    """Plain lines: one when a phase starts or ends, and one every ``every`` seconds of it."""

    def __init__(
        self,
        stream: TextIO,
        every: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._every = every
        self._clock = clock
        self._last: dict[str, tuple[str, float, RunProgress]] = {}

    def _line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def __call__(self, event: RunProgress) -> None:
        name, now = event.instance, self._clock()
        phase, at, previous = self._last.get(name, ("", now, event))
        if phase == "pulling" and event.phase != "pulling":
            self._line(f"{name}: pulled {_pull_text(previous)}")
        if event.phase == "done":
            self._last.pop(name, None)
            self._line(f"{name}: {event.outcome}, {event.pushed} entries pushed")
            return
        if event.phase != phase:
            if event.phase == "pushing":
                calls = math.ceil(event.to_push / max(1, event.batch_size))
                self._line(
                    f"{name}: pushing {event.to_push} entries in {calls} calls, "
                    f"at least {_eta_text(event)} at ZIA's rate"
                )
            else:
                self._line(f"{name}: pulling")
            at = now
        elif now - at >= self._every:
            if event.phase == "pulling":
                self._line(f"{name}: pulling, {_pull_text(event)} so far")
            else:
                self._line(
                    f"{name}: pushed {event.pushed} of {event.to_push}, "
                    f"at least {_eta_text(event)} left at ZIA's rate"
                )
            at = now
        self._last[name] = (event.phase, at, event)


def progress_for(stream: TextIO | None = None) -> ProgressSink:
    """Bars when ``stream`` (stderr by default) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    return BarProgress(stream) if stream.isatty() else PlainProgress(stream)
