"""``run --once`` progress for people: bars on a terminal (tqdm), plain lines otherwise.

It turns the pipeline's :class:`~threatshare.progress.RunProgress` events into a display on
stderr (stdout keeps the summary). The time left of a push is bound by ZIA's limits: ``N``
entries take ``⌈N / batch_size⌉`` calls, and ZIA's per-second and hourly limits say how long
those take at best, which for a large backlog is far longer than the network would.

On a terminal the bars and the log lines share stderr without fighting
(docs/design.md#command-line): there is one bar at a time, for the phase under way; when a
phase ends its bar is removed and one plain line says what it did, so no stale bar remains
after a halt or at the end; and while bars are up, log lines are written above them
(:func:`logs_above_bars`), never through them.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

from threatshare.durations import format_duration
from threatshare.logs import LIBRARY_LOGGERS
from threatshare.progress import ProgressSink, RunProgress
from threatshare.zia.ratelimit import default_limits, least_seconds

#: A plain line at least this often during a long phase (seconds).
PLAIN_EVERY = 10.0
#: Least seconds between two redraws of a bar (tqdm's own pace).
REDRAW_EVERY = 0.2
#: ZIA's limits of the call that adds a batch to a category.
PUSH_LIMITS = default_limits("PUT", "/urlCategories/{id}")


def push_eta(event: RunProgress) -> float:
    """The least time the rest of a push takes at ZIA's rate (seconds)."""
    calls = math.ceil(max(0, event.to_push - event.pushed) / max(1, event.batch_size))
    return least_seconds(calls, PUSH_LIMITS)


def _eta_text(event: RunProgress) -> str:
    return format_duration(timedelta(seconds=push_eta(event)))


def time_left(event: RunProgress) -> str:
    """How long the rest of a push takes at best, in words."""
    if push_eta(event) < 1:
        return "the last call to ZIA"
    return f"{_eta_text(event)} or more to go at the pace ZIA allows"


def _pull_text(event: RunProgress) -> str:
    return f"{event.pages} pages, {event.records} records, {event.staged} new entries staged"


def phase_lines(previous: RunProgress | None, event: RunProgress) -> list[str]:
    """The lines that record what ended when ``event`` came after ``previous`` (None: the
    instance's first event): its pull, and at the end its outcome."""
    name, lines = event.instance, []
    if previous is not None and previous.phase == "pulling" and event.phase != "pulling":
        lines.append(f"{name}: pulled {_pull_text(previous)}")
    if event.phase == "done":
        pushed = f", {event.pushed} entries pushed" if event.pushed or event.to_push else ""
        lines.append(f"{name}: {event.outcome}{pushed}")
    return lines


class BarProgress:
    """One tqdm bar at a time: pages while pulling, entries while pushing. When a phase ends
    the bar goes and a line stays; :meth:`close` removes whatever bar is left."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: tqdm | None = None
        self._last: RunProgress | None = None

    def _size(self) -> tuple[int, int]:
        # A terminal that reports no size (0x0, e.g. a fresh pseudo-terminal) would get empty
        # bars from tqdm: fall back to $COLUMNS/$LINES or 80x24.
        try:
            size = os.get_terminal_size(self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        fallback = shutil.get_terminal_size()
        return size.columns or fallback.columns, size.lines or fallback.lines

    def _open(self, event: RunProgress) -> tqdm:
        # Drawn once here, with its first figures; later events redraw at tqdm's pace.
        pushing = event.phase == "pushing"
        columns, lines = self._size()
        return tqdm(
            total=event.to_push if pushing else None,
            initial=event.pushed if pushing else event.pages,
            desc=f"{event.instance} {event.phase}",
            unit="entry" if pushing else "page",
            postfix=self._postfix(event),
            file=self._stream,
            ncols=columns,
            nrows=lines,
            mininterval=REDRAW_EVERY,
            leave=False,
        )

    @staticmethod
    def _postfix(event: RunProgress) -> str:
        if event.phase == "pulling":
            return f"{event.records} records, {event.staged} new"
        return time_left(event)

    def _end_phase(self, event: RunProgress) -> None:
        if self._bar is not None:
            self._bar.close()  # leave=False: the bar's line is cleared
            self._bar = None
        previous = self._last if self._last and self._last.instance == event.instance else None
        for line in phase_lines(previous, event):
            tqdm.write(line, file=self._stream)

    def __call__(self, event: RunProgress) -> None:
        last = self._last
        if last is None or (last.instance, last.phase) != (event.instance, event.phase):
            self._end_phase(event)
        self._last = None if event.phase == "done" else event
        if event.phase == "done":
            return
        if self._bar is None:
            self._bar = self._open(event)
            return
        done = event.pushed if event.phase == "pushing" else event.pages
        self._bar.set_postfix_str(self._postfix(event), refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Remove the bar still up (a run that stopped without its "done")."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._last = None


class _AboveBars:
    """A stream proxy for log handlers: each complete line goes out through tqdm.write, which
    clears the bars, writes the line and draws the bars again below it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, _, self._pending = self._pending.partition("\n")
            tqdm.write(line, file=self._stream)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


@contextmanager
def logs_above_bars(sink: ProgressSink, stream: TextIO | None = None) -> Iterator[None]:
    """While ``sink`` draws bars, log lines bound for ``stream`` (stderr) are written above
    them; at the end no bar is left on the screen. Nothing changes for plain lines."""
    stream = stream or sys.stderr
    if not isinstance(sink, BarProgress):
        yield
        return
    names = ["", *LIBRARY_LOGGERS]
    swapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    for name in names:
        for handler in logging.getLogger(name or None).handlers:
            ours = isinstance(handler, logging.StreamHandler) and handler.stream is stream
            if ours and all(h is not handler for h, _ in swapped):
                original = handler.setStream(_AboveBars(stream))  # type: ignore[arg-type]
                swapped.append((handler, original or stream))
    try:
        yield
    finally:
        sink.close()
        for handler, original in swapped:
            handler.setStream(original)


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
        for line in phase_lines(previous if phase else None, event):
            self._line(line)
        if event.phase == "done":
            self._last.pop(name, None)
            return
        if event.phase != phase:
            if event.phase == "pushing":
                calls = math.ceil(event.to_push / max(1, event.batch_size))
                pace = (
                    ""
                    if push_eta(event) < 1
                    else f", {_eta_text(event)} or more at the pace ZIA allows"
                )
                self._line(
                    f"{name}: pushing {event.to_push} entries in {calls} "
                    f"{'call' if calls == 1 else 'calls'} to ZIA{pace}"
                )
            else:
                self._line(f"{name}: pulling")
            at = now
        elif now - at >= self._every:
            if event.phase == "pulling":
                # What a pull stages is known at its end (it dedupes once, then).
                self._line(f"{name}: pulling, {event.pages} pages, {event.records} records so far")
            else:
                self._line(f"{name}: pushed {event.pushed} of {event.to_push}, {time_left(event)}")
            at = now
        self._last[name] = (event.phase, at, event)


def progress_for(stream: TextIO | None = None) -> ProgressSink:
    """Bars when ``stream`` (stderr by default) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    return BarProgress(stream) if stream.isatty() else PlainProgress(stream)
