"""`run --once` progress: the pipeline's events, the ETA bound by ZIA's rate, plain lines off a
terminal and progress bars on one."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e import FAST, World, seed
from tests.test_cli import cli
from tests.workers.processes import ROOT
from threatshare.ops.terminal_progress import PlainProgress, progress_for, push_eta
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
    """The events of one run count its pages and records as pulled, then its pushed entries up
    to what it staged, then its outcome; the final counts equal the run's counters."""
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
    assert [e.pages for e in pulls] == list(range(1, len(pulls) + 1))
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
        "a: pulling, 3 pages, 300 records, 30 new entries staged so far",
        "a: pulled 3 pages, 300 records, 30 new entries staged",
        "a: pushing 30 entries in 3 calls, at least 2s at ZIA's rate",
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
    assert "INSTANCE" in done.stdout and "all: " not in done.stdout


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
    assert "entry" in text and "ZIA's rate" in text
