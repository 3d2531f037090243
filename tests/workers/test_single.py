"""``threatshare run`` (single machine): embedded Redis in state_dir, stop and start again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from threatshare.embedded import connect_or_start, running_url
from threatshare.mimecast import format_time
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store

from .processes import spawn, stop, tail, wait_for

OVERLAP = timedelta(minutes=2)
INSTANCES = {"urls": {"zia": "prod", "category": "Single URLs", "sources": ["malicious_urls"]}}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        yield world


def bookmark_now(state_dir: Path) -> datetime | None:
    """The instance's bookmark, read from the running embedded Redis (None while not set)."""
    url = running_url(state_dir)
    if url is None:
        return None
    client = redis.Redis.from_url(url)
    try:
        return Store(client).load("urls").bookmark
    finally:
        client.close()


def stored_bookmark(state_dir: Path) -> datetime | None:
    """The bookmark persisted in state_dir, read by starting the embedded Redis on it."""
    url, server = connect_or_start(state_dir)
    assert server is not None, "the stopped process left its Redis running"
    client = redis.Redis.from_url(url)
    try:
        return Store(client).load("urls").bookmark
    finally:
        client.close()
        server.stop()


def test_run_continues_from_its_bookmark_after_a_restart(sandbox: Sandbox, tmp_path: Path) -> None:
    """Stopped by SIGTERM and started again, `run` reads on from its persisted bookmark (minus
    the overlap) and shares what Mimecast saw while it was down."""
    state_dir = tmp_path / "state"
    settings = {
        "state_dir": str(state_dir),
        "interval": "10s",
        "settle": "0s",
        "overlap": "2m",
        "log_format": "json",
    }
    config = sandbox.write_config(tmp_path / "threatshare.toml", INSTANCES, settings=settings)
    zia = sandbox.tenants["prod"].emulator
    sandbox.mimecast.add_url_logs(
        [url_log("https://first.example/a", datetime.now(UTC) - timedelta(hours=1))]
    )
    log = tmp_path / "run.log"

    first = spawn(config, "run", log=log)
    try:
        wait_for("the first run's bookmark", lambda: bookmark_now(state_dir), timeout=30)
        wait_for("the first activation", lambda: zia.active_urls("Single URLs"), timeout=30)
    finally:
        assert stop(first) == 0, tail(log)
    assert running_url(state_dir) is None, "SIGTERM must also stop the embedded Redis"
    bookmark = stored_bookmark(state_dir)
    assert bookmark is not None

    seen_while_down = datetime.now(UTC) - timedelta(seconds=30)
    sandbox.mimecast.add_url_logs([url_log("https://second.example/b", seen_while_down)])
    calls_before = len(sandbox.mimecast.calls_to("url"))
    second = spawn(config, "run", log=log)
    try:
        wait_for(
            "a run after the restart",
            lambda: len(sandbox.mimecast.calls_to("url")) > calls_before,
            timeout=30,
        )
        wait_for(
            "the second threat to be active",
            lambda: "second.example/b" in zia.active_urls("Single URLs"),
            timeout=30,
        )
    finally:
        assert stop(second) == 0, tail(log)
    # The first window page after the restart (a look at Mimecast's clock may come first).
    resumed = next(
        c for c in sandbox.mimecast.calls_to("url")[calls_before:] if c.query and "from" in c.query
    )
    assert resumed.query is not None
    assert resumed.query["from"] == format_time(bookmark - OVERLAP)
    assert zia.active_urls("Single URLs") == {"first.example/a", "second.example/b"}
