"""Faults that must lose nothing and alert no one (S4, S5): Redis restarted mid-run,
connections dropped mid-response, a token endpoint down for a while, and storms of 429, 5xx
and 409 answers. After each, every threat lands in ZIA, the instance ends ``ok``, and no
e-mail was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e import FAST, MakeRuntime, fast_runtime, run_in_process
from threatshare import config as config_module
from threatshare.config import Config
from threatshare.embedded import EmbeddedRedis
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast import url_log
from threatshare.sandbox.server import EmulatorServer, Request, Response, json_response
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store
from threatshare.sync import RunResult, sync_instance
from threatshare.sync.activation import activate_pending
from threatshare.zia.categories import category_description

INSTANCE = {
    "zia": "prod",
    "category": "Fault URLs",
    "sources": ["malicious_urls"],
    "notify": ["ops@example.com"],
}
MAX_RUNS = 8
LEASE = 2.0


def short_lease(config: Config, client: redis.Redis) -> Runtime:
    """A runtime whose run lock lapses within seconds (as a fleet worker's lease does)."""
    return Runtime(config, client, policy=FAST, zia_reauth_wait=0.05, lock_lease=LEASE)


class TokenOutage:
    """Wraps the Mimecast emulator: its token endpoint answers 503 until ``until``."""

    def __init__(self, inner: Callable[[Request], Response]) -> None:
        self.inner = inner
        self.until = 0.0
        self.refused = 0

    def __call__(self, request: Request) -> Response:
        if request.path == "/oauth/token" and time.monotonic() < self.until:
            self.refused += 1
            return json_response(503, {"error": "temporarily_unavailable"})
        return self.inner(request)


@dataclass
class Faulty:
    sandbox: Sandbox
    outage: TokenOutage
    config: Config
    redis_url: str
    added: int = 0

    def threats(self, count: int, at: datetime | None = None) -> set[str]:
        """Add ``count`` new malicious URLs to Mimecast; their entries."""
        at = at or datetime.now(UTC) - timedelta(seconds=30)
        urls = [f"https://f{self.added + i}.faults.example/login" for i in range(count)]
        self.added += count
        self.sandbox.mimecast.add_url_logs(url_log(url, at) for url in urls)
        return {url.removeprefix("https://") for url in urls}

    def run(self, runtime: MakeRuntime = fast_runtime) -> RunResult:
        return run_in_process(self.config, self.redis_url, runtime)["faulty"]

    def run_until_ok(self) -> list[RunResult]:
        results = []
        for _ in range(MAX_RUNS):
            results.append(self.run())
            if results[-1].outcome == "ok":
                break
        return results

    def active(self) -> set[str]:
        return self.sandbox.tenants["prod"].emulator.active_urls(INSTANCE["category"])

    def state(self) -> Any:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return Store(client).load("faulty")
        finally:
            client.close()

    def mails(self) -> list[Any]:
        return self.sandbox.smtp.messages


def _faulty(tmp_path: Path, redis_url: str, **settings: str) -> Iterator[Faulty]:
    with Sandbox() as sandbox:
        outage = TokenOutage(sandbox.mimecast)
        with EmulatorServer(outage) as server:
            merged = {"redis_url": redis_url, "settle": "0s", "run_deadline": "10s", **settings}
            text = sandbox.config({"faulty": INSTANCE}, settings=merged)
            path = tmp_path / "threatshare.toml"
            path.write_text(text.replace(sandbox.mimecast_url, server.url))
            path.chmod(0o600)
            yield Faulty(sandbox, outage, config_module.load(path), redis_url)


@pytest.fixture
def faulty(tmp_path: Path, redis_url: str) -> Iterator[Faulty]:
    yield from _faulty(tmp_path, redis_url)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of its own that keeps its data on disk across a restart."""
    server = EmbeddedRedis(data_dir=tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def persistent_world(tmp_path: Path, persistent_redis: EmbeddedRedis) -> Iterator[Faulty]:
    yield from _faulty(tmp_path, persistent_redis.url)


class TestRedisRestart:
    def test_redis_stopped_mid_run_then_restarted_loses_nothing(
        self, persistent_world: Faulty, persistent_redis: EmbeddedRedis
    ) -> None:
        """A run whose Redis goes away mid-pull ends retrying without moving the bookmark;
        after Redis comes back (from its files) a rerun shares everything, with no e-mail."""
        world = persistent_world
        first = world.threats(3)
        assert world.run().outcome == "ok"
        bookmark = world.state().bookmark
        second = world.threats(4)
        world.sandbox.mimecast.latency = 0.6
        outcome: list[RunResult] = []

        def pull_and_lose_redis() -> None:
            client = redis.Redis.from_url(world.redis_url)
            rt = short_lease(world.config, client)
            outcome.append(sync_instance(rt, "faulty"))
            rt.close()

        runner = threading.Thread(target=pull_and_lose_redis)
        runner.start()
        time.sleep(0.3)  # the run holds its lock and waits on Mimecast
        persistent_redis.stop()
        runner.join(timeout=30)
        assert outcome and outcome[0].outcome == "retrying"
        assert outcome[0].error is not None
        assert outcome[0].error["code"] == "store_unavailable"
        persistent_redis.start()
        world.sandbox.mimecast.latency = 0.0
        assert world.state().bookmark == bookmark  # persisted, and not moved
        time.sleep(LEASE + 0.2)  # the dead run's lock lease lapses
        results = world.run_until_ok()
        assert results[-1].outcome == "ok"
        assert world.active() == first | second
        assert world.state().state == "ok"
        assert world.mails() == []


class TestDroppedConnections:
    def test_dropped_answers_from_mimecast_and_zia_are_retried(self, faulty: Faulty) -> None:
        """Connections closed halfway through answers of Mimecast, its token endpoint and ZIA
        (after ZIA performed the call) are retried within the run; nothing is lost."""
        entries = faulty.threats(5)
        faulty.sandbox.mimecast.fail_next("token", "drop", 2)
        faulty.sandbox.mimecast.fail_next("url", "drop", 3)
        zia = faulty.sandbox.tenants["prod"].emulator
        zia.fail_next("drop", 2, path="/urlCategories/{id}")
        zia.fail_next("drop", 1, path="/status/activate")
        faulty.sandbox.idp.fail_next("drop", 1)
        results = faulty.run_until_ok()
        activate_pending_again(faulty)
        assert results[-1].outcome == "ok"
        assert faulty.active() == entries
        drops = [c for c in faulty.sandbox.mimecast.calls if c.fault == "drop"]
        assert len(drops) == 5
        assert faulty.mails() == []


def activate_pending_again(faulty: Faulty) -> None:
    """An activation dropped mid-answer leaves the tenant marked; the next round activates."""
    client = redis.Redis.from_url(faulty.redis_url)
    rt = Runtime(faulty.config, client, policy=FAST)
    try:
        activate_pending(rt)
    finally:
        rt.close()
        client.close()


class TestTokenEndpointDown:
    def test_mimecast_token_endpoint_down_for_a_while(self, faulty: Faulty) -> None:
        """While the token endpoint is down every run ends retrying (no e-mail, bookmark
        kept); the first run after it is back shares what came meanwhile."""
        first = faulty.threats(2)
        assert faulty.run().outcome == "ok"
        bookmark = faulty.state().bookmark
        faulty.outage.until = time.monotonic() + 2.0
        during = faulty.threats(3)
        retrying = 0
        for _ in range(40):
            if time.monotonic() >= faulty.outage.until:
                break
            result = faulty.run()
            if result.outcome == "ok":  # the outage ended while this run was retrying
                assert time.monotonic() >= faulty.outage.until
                break
            assert result.outcome == "retrying"
            assert result.error is not None and result.error["kind"] == "temporary"
            assert faulty.state().bookmark == bookmark
            retrying += 1
            time.sleep(0.2)
        assert retrying >= 2 and faulty.outage.refused >= retrying
        time.sleep(max(0.0, faulty.outage.until - time.monotonic()))
        assert faulty.run().outcome == "ok"
        assert faulty.active() == first | during
        assert faulty.state().state == "ok"
        assert faulty.mails() == []

    def test_zia_token_endpoint_failing_repeatedly(self, faulty: Faulty) -> None:
        """The IdP answering 503, 429 and HTML pages for dozens of requests only delays the
        push; the instance recovers to ok by itself."""
        entries = faulty.threats(3)
        idp = faulty.sandbox.idp
        idp.fail_next("503", 15)
        idp.fail_next("html", 10)
        idp.fail_next("500", 5)
        results = faulty.run_until_ok()
        assert [r.outcome for r in results[:-1]] == ["retrying"] * (len(results) - 1)
        assert len(results) >= 2 and results[-1].outcome == "ok"
        assert faulty.active() == entries
        assert faulty.mails() == []


class TestStorms:
    def test_storm_of_zia_429_5xx_and_409(self, faulty: Faulty) -> None:
        """A storm of ZIA 409 edit locks, Org barriers, 5xx, read-only 403s and 429s on every
        endpoint a run uses ends in every entry active, state ok, and no e-mail."""
        entries = faulty.threats(30)
        zia = faulty.sandbox.tenants["prod"].emulator
        # The category exists (a Redis wiped since): the run finds it, reads it and adds to it,
        # so every endpoint of a run is in the storm.
        zia.admin_create(INSTANCE["category"], [], category_description("faulty"))
        zia.injected_retry_after = 0
        # Failed calls count toward ZIA's limits too (PUT 1/s, GET 2/s), so the fleet's
        # limiter paces the retries: a storm costs about a second per failed PUT.
        category = "/urlCategories/{id}"
        for kind, count, path in (
            ("503", 2, "/urlCategories"),
            ("500", 1, "/urlCategories"),
            ("429", 1, "/urlCategories"),
            ("503", 2, "/urlCategories/urlQuota"),
            ("409", 2, category),
            ("409_barrier", 1, category),
            ("403_readonly", 1, category),
            ("429_body", 1, category),
            ("500", 1, category),
            ("409", 1, "/status/activate"),
        ):
            zia.fail_next(kind, count, path=path)
        results = faulty.run_until_ok()
        for _ in range(MAX_RUNS):  # an activation refused by the storm is done by a later round
            if faulty.active() == entries:
                break
            activate_pending_again(faulty)
        assert results[-1].outcome == "ok"
        assert faulty.active() == entries
        refused = [c for c in zia.calls if c.status in (409, 429, 500, 503, 403)]
        assert len(refused) == 13
        assert faulty.state().state == "ok"
        assert faulty.mails() == []

    def test_storm_of_mimecast_429_and_5xx(self, faulty: Faulty) -> None:
        """Mimecast 429s (X-RateLimit-Reset in ms), 5xx, proxy pages and retryable fail[]
        answers end in every entry active, state ok, and no e-mail."""
        entries = faulty.threats(20)
        mimecast = faulty.sandbox.mimecast
        for kind, count in (
            ("429", 4),
            ("500", 3),
            ("502", 3),
            ("503", 3),
            ("proxy", 3),
            ("fail_retryable", 3),
            ("429", 4),
        ):
            mimecast.fail_next("url", kind, count, reset_ms=20)
        mimecast.fail_next("token", "503", 3)
        results = faulty.run_until_ok()
        assert results[-1].outcome == "ok"
        assert faulty.active() == entries
        faults = [c.fault for c in mimecast.calls if c.fault]
        assert len(faults) == 26
        assert faulty.state().state == "ok"
        assert faulty.mails() == []
