"""`run --once` progress: the pipeline's events, the ETA bound by ZIA's rate, plain lines off a
terminal and progress bars on one."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog

from tests.e2e import FAST, World, seed
from tests.test_cli import cli
from tests.workers.processes import ROOT
from threatshare import logs
from threatshare.logs import LIBRARY_LOGGERS
from threatshare.ops.terminal_progress import (
    BarProgress,
    PlainProgress,
    logs_above_bars,
    progress_for,
    push_eta,
    time_left,
)
from threatshare.progress import RunProgress
from threatshare.runtime import Runtime
from threatshare.sandbox.world import Sandbox
from threatshare.sync import sync_all
from threatshare.sync.activation import activate_pending
from threatshare.zia.ratelimit import MEDIUM, Limit, least_seconds

ALL = {
    "all": {
        "zia": "prod",
        "category": "All Threats",
        "sources": ["malicious_urls", "url_domains", "malicious_domains"],
        "batch_size": 2,
    }
}


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod",)) as sandbox:
        seed(sandbox)
        yield World(sandbox, tmp_path, redis_url)


def test_a_run_reports_pages_staging_pushing_and_its_outcome(world: World) -> None:
    """The events of one run count its pages and records as pulled, then what the pull staged,
    then its pushed entries up to that, then its outcome; the final counts equal the run's
    counters."""
    config = world.config(ALL)
    events: list[RunProgress] = []
    client = redis.Redis.from_url(world.redis_url)
    rt = Runtime(config, client, policy=FAST, progress=events.append)
    try:
        [result] = sync_all(rt, ["all"])
        activate_pending(rt)
    finally:
        rt.close()
        client.close()
    assert result.outcome == "ok"
    phases = [e.phase for e in events]
    assert phases[0] == "pulling" and phases[-1] == "done"
    assert phases == sorted(phases, key=["pulling", "pushing", "done"].index)
    pulls = [e for e in events if e.phase == "pulling"]
    # Each page counts one more; the pull's end repeats the count with what it staged.
    assert [e.pages for e in pulls] == [*range(1, len(pulls)), len(pulls) - 1]
    assert all(e.staged == 0 for e in pulls[:-1])
    assert pulls[-1].records == result.counters["pulled"]
    pushes = [e for e in events if e.phase == "pushing"]
    staged = pulls[-1].staged
    assert staged == result.counters["pushed"] > 2
    assert all(e.to_push == staged and e.batch_size == 2 for e in pushes)
    assert [e.pushed for e in pushes] == sorted(e.pushed for e in pushes)
    assert pushes[0].pushed == 0 and pushes[-1].pushed == result.counters["pushed"]
    assert events[-1].outcome == "ok" and events[-1].instance == "all"


def test_eta_is_bound_by_zias_rate() -> None:
    """The least time of N calls follows the strictest window: one call is free, three calls at
    one a second take 2s, and the 401st call of an hour waits for the next hour."""
    assert least_seconds(1, MEDIUM) == 0
    assert least_seconds(3, MEDIUM) == 2
    assert least_seconds(400, MEDIUM) == 399
    assert least_seconds(401, MEDIUM) == 3600
    assert least_seconds(21, (Limit(10, 60.0),)) == 120
    event = RunProgress("x", "pushing", to_push=4001, pushed=1, batch_size=10)
    assert push_eta(event) == 399  # 400 PUTs left at 1/s, within the hourly 400


def test_plain_lines_when_not_a_terminal() -> None:
    """Off a terminal, a phase change or a long phase prints a line; a quick page does not."""
    out = io.StringIO()
    clock = iter([0.0, 1.0, 12.0, 13.0, 14.0, 15.0]).__next__
    sink = progress_for(out)
    assert isinstance(sink, PlainProgress)
    sink = PlainProgress(out, every=10.0, clock=clock)
    sink(RunProgress("a", "pulling", pages=1, records=100, staged=10))
    sink(RunProgress("a", "pulling", pages=2, records=200, staged=20))
    sink(RunProgress("a", "pulling", pages=3, records=300, staged=30))
    sink(RunProgress("a", "pushing", staged=30, to_push=30, batch_size=10))
    sink(RunProgress("a", "pushing", staged=30, pushed=30, to_push=30, batch_size=10))
    sink(RunProgress("a", "done", staged=30, pushed=30, to_push=30, outcome="ok"))
    assert out.getvalue().splitlines() == [
        "a: pulling",
        "a: pulling, 3 pages, 300 records so far",
        "a: pulled 3 pages, 300 records, 30 new entries staged",
        "a: pushing 30 entries in 3 calls to ZIA, 2s or more at the pace ZIA allows",
        "a: ok, 30 entries pushed",
    ]


def test_run_once_prints_plain_progress_lines_off_a_terminal(world: World) -> None:
    """`run --once` with stderr not a terminal writes plain progress lines there, and keeps
    stdout for the summary."""
    done = cli(world.write(ALL), "run", "--once")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("all: ")]
    assert lines[0] == "all: pulling"
    assert lines[-1].startswith("all: ok, ") and lines[-1].endswith(" entries pushed")
    assert any(line.startswith("all: pushing ") for line in lines)
    assert "\r" not in done.stderr
    # The summary's own lines (reasons per instance) are on stdout; progress never is.
    assert "INSTANCE" in done.stdout
    assert not any(line in done.stdout for line in lines)


def test_run_once_draws_progress_bars_on_a_terminal(world: World) -> None:
    """On a terminal, `run --once` draws tqdm bars (redrawn in place) for pulling and pushing."""
    config = world.write(ALL, settings={"log_format": "json"})
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "threatshare.cli", "--config", str(config), "run", "--once"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=child,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([parent], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(parent)
        code = process.wait(timeout=30)
    text = output.decode(errors="replace")
    assert code == 0, text[-2000:]
    assert "all pulling" in text and "all pushing" in text
    assert "\r" in text  # redrawn in place
    assert "entry" in text and "ZIA's rate" not in text and "≥" not in text
    final = screen(text)
    assert not [line for line in final if BAR.search(line)], final  # no bar left behind
    assert any(line.startswith("all: pulled ") for line in final), final
    assert any(line.startswith("all: ok, ") for line in final), final
    for line in final:  # every log line whole, on a line of its own
        if '"event"' in line:
            json.loads(line)
    assert "Job OK" not in text and "result is kept" not in text


# A bar as tqdm draws it: "NAME pulling: 3page [..." or "NAME pushing:  40%|####  | 2/5 [...".
BAR = re.compile(r"\b(pulling|pushing): ")


def screen(output: str) -> list[str]:
    """What a terminal shows after ``output``: carriage returns, newlines and cursor-up (all
    tqdm uses) applied, other escape sequences ignored, trailing blanks dropped."""
    rows: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(output):
        char = output[i]
        if char == "\x1b":
            found = re.match(r"\x1b\[(\d*)([A-Za-z])", output[i:])
            if found:
                count = int(found.group(1) or 1)
                if found.group(2) == "A":
                    row = max(0, row - count)
                elif found.group(2) == "K":
                    del rows[row][col:]
                i += found.end()
                continue
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
        else:
            line = rows[row]
            line.extend(" " * (col - len(line) + 1))
            line[col] = char
            col += 1
        i += 1
    return ["".join(line).rstrip() for line in rows if "".join(line).strip()]


class Terminal(io.StringIO):
    """A stream that says it is a terminal (tqdm draws on it) and records what was drawn."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """logs.configure is process-wide: put the root and RQ's loggers back afterwards."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in LIBRARY_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    structlog.reset_defaults()
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def test_bars_and_logs_do_not_fight_and_no_bar_outlives_its_phase(fresh_logging: None) -> None:
    """On a terminal: one bar per phase drawn once when it starts; log lines (ours and RQ's
    warnings) land whole above the bars; a phase that ends leaves one line, not its bar, also
    when the instance halts mid-push; at the end nothing of a bar is left on the screen."""
    tty = Terminal()
    logs.configure("json", stream=tty)  # type: ignore[arg-type]
    log = structlog.get_logger("test")
    sink = progress_for(tty)
    assert isinstance(sink, BarProgress)
    with logs_above_bars(sink, tty):
        sink(RunProgress("a", "pulling", pages=1, records=100, staged=10))
        assert tty.getvalue().count("a pulling") == 1  # drawn once, not twice
        log.info("run.start", instance="a")
        sink(RunProgress("a", "pulling", pages=2, records=200, staged=20))
        sink(RunProgress("a", "pushing", staged=20, to_push=20, batch_size=10))
        logging.getLogger("rq.worker").warning("Worker stopped by a cold shutdown")
        sink(RunProgress("a", "pushing", staged=20, pushed=20, to_push=20, batch_size=10))
        sink(RunProgress("a", "done", staged=20, pushed=20, to_push=20, outcome="ok"))
        sink(RunProgress("b", "pulling", pages=1, records=5, staged=5))
        sink(RunProgress("b", "pushing", staged=5, to_push=5, batch_size=10))
        log.error("run.halted", instance="b", code="zia_auth")
        sink(RunProgress("b", "done", staged=5, to_push=5, outcome="halted"))
        sink(RunProgress("c", "pulling", pages=1, records=1, staged=0))  # never finishes
    final = screen(tty.getvalue())
    assert not [line for line in final if BAR.search(line)], final
    events = [json.loads(line)["event"] for line in final if line.startswith("{")]
    assert events == ["run.start", "Worker stopped by a cold shutdown", "run.halted"]
    assert [line for line in final if not line.startswith("{")] == [
        "a: pulled 2 pages, 200 records, 20 new entries staged",
        "a: ok, 20 entries pushed",
        "b: pulled 1 pages, 5 records, 5 new entries staged",
        "b: halted, 0 entries pushed",
    ]


def test_rq_chatter_is_dropped_unless_asked(fresh_logging: None) -> None:
    """RQ's INFO lines ("Job OK", "result is kept for…") stay out even after RQ sets its
    loggers to INFO, as a worker does when it starts; its warnings show; with the libraries'
    level at INFO (`-v`) its INFO lines show too."""
    quiet = io.StringIO()
    logs.configure("json", stream=quiet)
    logging.getLogger("rq.worker").setLevel(logging.INFO)  # what Worker.work() does
    logging.getLogger("rq.worker").info("threatshare: Job OK (sync-urls-1)")
    logging.getLogger("rq.job").info("job sync-urls-1 result is kept for 20 seconds")
    logging.getLogger("rq.worker").warning("Moving job to FailedJobRegistry")
    assert [json.loads(x)["event"] for x in quiet.getvalue().splitlines()] == [
        "Moving job to FailedJobRegistry"
    ]
    asked = io.StringIO()
    logs.configure("json", stream=asked, third_party_level=logging.INFO)
    logging.getLogger("rq.worker").info("threatshare: Job OK (sync-urls-1)")
    assert "Job OK" in asked.getvalue()


def test_verbose_flag_is_accepted_by_the_command_line(world: World) -> None:
    """`-v` (the libraries' own lines too) is accepted before the command, and changes no
    command's outcome."""
    config = world.write(ALL, settings={"log_format": "json"})
    plain = cli(config, "status")
    verbose = cli(config, "-v", "status")
    assert plain.returncode == verbose.returncode == 0, verbose.stderr


def test_plain_words_for_the_time_a_push_takes() -> None:
    """The time left of a push reads as words: a duration "or more to go", or the last call."""
    assert time_left(RunProgress("a", "pushing", to_push=30, batch_size=10)) == (
        "2s or more to go at the pace ZIA allows"
    )
    assert time_left(RunProgress("a", "pushing", to_push=5, batch_size=10)) == (
        "the last call to ZIA"
    )
