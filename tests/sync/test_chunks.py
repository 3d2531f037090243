"""Large windows are worked in chunks (docs/design.md#the-bookmark-and-the-window): the deadline
bounds pulling, checked between pages, and the bookmark moves after each fully shared chunk, so a
backlog longer than one run is shared over a few runs, each making progress; a day too heavy for one
run is worked in smaller chunks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e import FAST
from threatshare import config as config_module
from threatshare.config import Config
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store
from threatshare.sync import sync_instance
from threatshare.sync.window import CHUNK_FLOOR, Window, chunks, next_span

DAYS = 12
PER_DAY = 6
PAGE_SIZE = 3  # two pages a day, then the trailing empty page and the one more call it is worth
#: Seconds of the run clock one Mimecast call costs; the run deadline is 5 minutes.
SECONDS_PER_CALL = 12.5
TIME_SCALE = 50.0
INSTANCES = {
    "backlog": {
        "zia": "prod",
        "category": "Backlog URLs",
        "sources": ["malicious_urls"],
        "fetch_from": f"{DAYS + 1}d",
    }
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # The runtime and the emulator agree on a faster clock for ZIA's rate windows, so the
    # dozens of pushes of a chunked backlog do not wait out real seconds.
    with Sandbox(tenant_names=("prod",), time_scale=TIME_SCALE) as world:
        now = datetime.now(UTC)
        world.mimecast.add_url_logs(
            url_log(f"https://d{day}-{n}.backlog.example/x", now - timedelta(days=day, hours=n))
            for day in range(1, DAYS + 1)
            for n in range(PER_DAY)
        )
        yield world


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path, redis_url: str) -> Config:
    settings = {"redis_url": redis_url, "settle": "0s", "run_deadline": "5m"}
    path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
    loaded = config_module.load(path)
    account = loaded.mimecast["main"].model_copy(update={"page_size": PAGE_SIZE})
    return loaded.model_copy(update={"mimecast": {"main": account}})


class TestBacklogInChunks:
    def test_a_backlog_of_three_deadlines_is_shared_over_about_three_runs(
        self, sandbox: Sandbox, config: Config, redis_client: redis.Redis
    ) -> None:
        """Pulling the backlog takes about three runs' pulling time (the run clock advances
        with every Mimecast call): each run stops at its deadline with its bookmark further
        on, what it pulled is in the category, and after about three runs everything is."""
        calls = sandbox.mimecast.calls

        def run_clock() -> float:
            return SECONDS_PER_CALL * len(calls)

        rt = Runtime(config, redis_client, policy=FAST, monotonic=run_clock, time_scale=TIME_SCALE)
        store = Store(redis_client)
        bookmarks: list[datetime] = []
        try:
            for _ in range(6):
                result = sync_instance(rt, "backlog")
                assert result.outcome == "ok", result.error
                bookmark = store.load("backlog").bookmark
                assert bookmark is not None
                bookmarks.append(bookmark)
                if bookmark >= datetime.now(UTC) - timedelta(minutes=5):
                    break
        finally:
            rt.close()
        assert 3 <= len(bookmarks) <= 4, bookmarks
        assert bookmarks == sorted(set(bookmarks))  # every run made progress
        shared = sandbox.tenants["prod"].emulator.staged_urls("Backlog URLs")
        assert len(shared) == DAYS * PER_DAY

    def test_chunks_cover_the_window_oldest_first(self) -> None:
        """A window is cut into consecutive chunks of at most a day, oldest first, and only
        the first carries the lost span."""
        start = datetime(2026, 11, 1, 6, tzinfo=UTC)
        lost = start - timedelta(days=3)
        window = Window(start, start + timedelta(days=2, hours=5), lost_from=lost)
        pieces = chunks(window)
        assert [p.start for p in pieces] == [start + timedelta(days=d) for d in range(3)]
        assert pieces[-1].end == window.end
        assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
        assert [p.lost_from for p in pieces] == [lost, None, None]


HEAVY_RECORDS = 48  # one every half hour of one day: 24 pages, about three runs' pulling time
HEAVY_SECONDS_PER_CALL = 25.0
HEAVY = {
    "heavy": {
        "zia": "prod",
        "category": "Heavy URLs",
        "sources": ["malicious_urls"],
        "fetch_from": "1d",
    }
}


class TestAdaptiveChunks:
    def test_a_day_that_outlasts_the_deadline_is_shared_in_smaller_chunks(
        self, tmp_path: Path, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """One day's records take longer to pull than a run may: the runs that made no
        progress halve the chunk span, and then every run moves the bookmark until the whole
        day is shared, within a bounded number of runs; every record's entry is in the
        category, and the span doubles after a run whose chunks were pulled comfortably."""
        with Sandbox(tenant_names=("prod",), time_scale=TIME_SCALE) as sandbox:
            now = datetime.now(UTC)
            start = now - timedelta(days=1) + timedelta(minutes=10)
            sandbox.mimecast.add_url_logs(
                url_log(f"https://h{n}.heavy.example/x", start + timedelta(minutes=30 * n))
                for n in range(HEAVY_RECORDS)
            )
            settings = {"redis_url": redis_url, "settle": "0s", "run_deadline": "5m"}
            path = sandbox.write_config(tmp_path / "t.toml", HEAVY, settings=settings)
            loaded = config_module.load(path)
            account = loaded.mimecast["main"].model_copy(update={"page_size": 2})
            config = loaded.model_copy(update={"mimecast": {"main": account}})
            calls = sandbox.mimecast.calls
            rt = Runtime(
                config,
                redis_client,
                policy=FAST,
                monotonic=lambda: HEAVY_SECONDS_PER_CALL * len(calls),
                time_scale=TIME_SCALE,
            )
            store = Store(redis_client)
            bookmarks: list[datetime | None] = []
            spans: list[timedelta | None] = []
            try:
                for _ in range(10):
                    result = sync_instance(rt, "heavy")
                    assert result.outcome == "ok", result.error
                    state = store.load("heavy")
                    bookmarks.append(state.bookmark)
                    spans.append(state.chunk_span)
                    if state.bookmark is not None and state.bookmark >= now:
                        break
                assert sync_instance(rt, "heavy").outcome == "ok"  # caught up: a short window
                grown = store.load("heavy").chunk_span
            finally:
                rt.close()
            shared = sandbox.tenants["prod"].emulator.staged_urls("Heavy URLs")
        assert len(bookmarks) <= 8, bookmarks
        stalled = bookmarks.count(None)
        assert 1 <= stalled <= 3 and bookmarks[:stalled] == [None] * stalled
        moved = bookmarks[stalled:]
        assert all(a < b for a, b in itertools.pairwise(moved))  # each run made progress
        assert spans[stalled - 1] is not None and spans[stalled - 1] < timedelta(hours=12)
        assert grown is not None and grown == 2 * spans[-1]
        assert shared == {f"h{n}.heavy.example/x" for n in range(HEAVY_RECORDS)}

    def test_the_span_halves_to_a_floor_and_doubles_back_to_a_day(self) -> None:
        """A stalled run halves the span (never below the floor), a comfortable one doubles
        it (never beyond a day), any other run keeps it."""
        day = timedelta(days=1)
        assert next_span(day, stalled=True, comfortable=False) == day / 2
        assert next_span(CHUNK_FLOOR, stalled=True, comfortable=False) == CHUNK_FLOOR
        assert next_span(day / 4, stalled=False, comfortable=True) == day / 2
        assert next_span(day, stalled=False, comfortable=True) == day
        assert next_span(day / 4, stalled=False, comfortable=False) == day / 4
