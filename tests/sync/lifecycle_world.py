"""A sandbox instance on a clock the test drives, for the lifecycle tests (S13)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from tests.e2e import FAST, World
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.ops.status import instance_status
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.state.store import Store
from threatshare.sync import RunResult, sync_instance
from threatshare.sync.activation import activate_pending

CATEGORY = "Lifecycle URLs"
INSTANCE: dict[str, Any] = {
    "zia": "prod",
    "category": CATEGORY,
    "sources": ["malicious_urls"],
    "notify": ["secops@example.com"],
    "fetch_from": "2h",
}
DAY = timedelta(days=1)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@dataclass
class Life:
    """One instance on a sandbox, run on a clock of its own."""

    world: World
    clock: Clock
    config: Config

    @property
    def zia(self) -> ZiaEmulator:
        return self.world.sandbox.tenants["prod"].emulator

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.world.redis_url)

    def configure(self, **instance: Any) -> None:
        tenant = instance.pop("tenant", {})
        settings = instance.pop("settings", {})
        self.config = self.world.config(
            {"life": {**INSTANCE, **instance}},
            tenant_overrides={"prod": tenant},
            settings=settings,
        )

    def threats(self, urls: list[str], ago: timedelta = timedelta(minutes=30)) -> set[str]:
        """Mimecast records of ``urls`` at ``ago`` before the clock; their entries."""
        at = self.clock.now - ago
        self.world.sandbox.mimecast.add_url_logs(
            url_log(url, at + timedelta(seconds=i)) for i, url in enumerate(urls)
        )
        return {u.removeprefix("https://") for u in urls}

    def run(self) -> RunResult:
        client = self.redis
        rt = Runtime(self.config, client, policy=FAST, zia_reauth_wait=0.05, now=self.clock)
        try:
            result = sync_instance(rt, "life")
            activate_pending(rt)
        finally:
            rt.close()
        Outbox(client).deliver(self.config.smtp)
        return result

    def active(self) -> set[str]:
        return self.zia.active_urls(CATEGORY)

    def calls(self) -> int:
        return len(self.zia.calls)

    def buckets_since(self, count: int) -> list[str]:
        return [c.bucket for c in self.zia.calls[count:]]

    def status(self) -> dict[str, Any]:
        return instance_status(self.config, Store(self.redis), "life")

    def subjects(self) -> list[str]:
        return [m.message["Subject"] for m in self.world.sandbox.smtp.messages]


@contextmanager
def make_life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with Sandbox(tenant_names=("prod",)) as sandbox:
        world = World(sandbox, tmp_path, redis_url)
        clock = Clock(datetime.now(UTC).replace(microsecond=0))
        yield Life(world, clock, world.config({"life": INSTANCE}))


def urls(prefix: str, count: int) -> list[str]:
    return [f"https://{prefix}{i}.lifecycle.example/p" for i in range(count)]
