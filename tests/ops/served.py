"""A synced sandbox world with ``threatshare serve`` running on it, for the endpoint tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.e2e import World, seed
from tests.test_cli import cli
from tests.workers.processes import spawn, stop, tail, wait_for
from threatshare.embedded import EmbeddedRedis, free_port
from threatshare.sandbox.world import Sandbox


@dataclass
class Served:
    world: World
    redis: EmbeddedRedis
    config: Path
    base: str
    log: Path
    run_once: subprocess.CompletedProcess[str]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=30)

    def status_json(self) -> dict[str, Any]:
        done = cli(self.config, "status", "--json")
        assert done.returncode in (0, 1, 2), done.stderr
        return json.loads(done.stdout)


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def served(tmp_path: Path, *, zia_429s: int = 0, url_quota: int = 40) -> Iterator[Served]:
    """Seeded emulators, a Redis of its own (the test may stop it), one real ``run --once``
    (tenant ``lab`` is revoked, so one instance halts), then ``serve`` as a child process. A
    small ``url_quota`` makes the quota bars visibly filled."""
    sandbox = Sandbox(tenant_names=("prod", "lab"), url_quota=url_quota)
    with EmbeddedRedis() as server, sandbox:
        seed(sandbox)
        world = World(sandbox, tmp_path, server.url)
        sandbox.idp.revoke(sandbox.tenants["lab"].client_id)
        prod = sandbox.tenants["prod"].emulator
        prod.injected_retry_after = 0
        if zia_429s:
            # Every pushing run reads the quota (a new category is created with its entries,
            # so a first run makes no PUT).
            prod.fail_next("429", zia_429s, path="/urlCategories/urlQuota")
        config = world.write(settings={"log_format": "json"})
        once = cli(config, "run", "--once")
        port = free_port()
        log = tmp_path / "serve.log"
        process = spawn(config, "serve", "--listen", f"127.0.0.1:{port}", log=log)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for("serve to answer", lambda: process.poll() is None and _answers(base), 30)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{tail(log)}") from None
            yield Served(world, server, config, base, log, once)
        finally:
            stop(process)
