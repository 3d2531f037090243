"""Several worker processes pushing to one ZIA tenant share its rate limits through Redis."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from pydantic import SecretStr

from threatshare.config import ZiaTenant
from threatshare.http import Deadline, RetryPolicy
from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.zia.client import ZiaClient
from threatshare.zia.ratelimit import RateLimiter

SCOPE = "zscloud.net::2002::threatshare"
CLIENT_ID = "fleet"
SECRET = "fleet-secret"
WORKERS = 4
ENTRIES_PER_WORKER = 20
BATCH_SIZE = 5  # four PUTs per worker, sixteen in all: at 1/s the run takes ~16 s
ACTIVATIONS_PER_WORKER = 12  # 48 in all: more than the (scaled) 40 an hour allows at once
# Hour windows become 6 s and minute windows 0.1 s, so the hourly activation ceiling binds.
TIME_SCALE = 600.0


@dataclass(frozen=True)
class Job:
    """What one worker process is told: where everything is and which category is its own."""

    index: int
    api_base: str
    token_url: str
    redis_url: str
    #: Wall-clock time at which every worker starts, so they push at the same time (and the
    #: interpreter start-up of one does not overlap the pushing of another).
    start_at: float


def push(job: Job) -> int:
    """One worker: find or create its category, push its entries in small batches, activate
    a few times; returns how many entries landed."""
    tenant = ZiaTenant(
        api_base=job.api_base,
        auth="oauth",
        token_url=job.token_url,
        client_id=CLIENT_ID,
        client_secret=SecretStr(SECRET),
        scope=SCOPE,
    )
    connection = redis.Redis.from_url(job.redis_url)
    limiter = RateLimiter(connection, tenant.tenant_id, time_scale=TIME_SCALE)
    policy = RetryPolicy(initial_wait=0.05, max_wait=0.5, jitter=0.05)
    name = f"Fleet worker {job.index}"
    entries = [f"w{job.index}-{i}.example.net/x" for i in range(ENTRIES_PER_WORKER)]
    time.sleep(max(0.0, job.start_at - time.time()))
    with ZiaClient(tenant, limiter=limiter, deadline=Deadline.after(90), policy=policy) as client:
        category_id = client.find_or_create_category(name, "fleet test")
        batches = (entries[i : i + BATCH_SIZE] for i in range(0, len(entries), BATCH_SIZE))
        pushed, _ = client.add_batches(category_id, name, batches, lambda batch: None)
        for _ in range(ACTIVATIONS_PER_WORKER):
            client.activate()
    connection.close()
    return pushed


@dataclass
class Tenant:
    zia: ZiaEmulator
    api_base: str
    token_url: str


@pytest.fixture
def tenant() -> Iterator[Tenant]:
    idp = IdpEmulator()
    idp.add_client(CLIENT_ID, SECRET, scope=SCOPE)
    zia = ZiaEmulator(idp=idp, scope=SCOPE, time_scale=TIME_SCALE, enforce_limits=True)
    with EmulatorServer(idp) as idp_server, EmulatorServer(zia) as zia_server:
        yield Tenant(zia, f"{zia_server.url}/api/v1", f"{idp_server.url}/oauth2/v1/token")


def _around_429(zia: ZiaEmulator) -> list[str]:
    """The calls of a bucket near each 429, for a readable failure."""
    start = zia.calls[0].at
    lines = []
    for refused in (c for c in zia.calls if c.status == 429):
        near = [c for c in zia.calls if c.bucket == refused.bucket and abs(c.at - refused.at) < 2]
        lines.append(
            f"{refused.bucket}: " + ", ".join(f"{c.at - start:.3f}={c.status}" for c in near)
        )
    return lines


@pytest.mark.slow
def test_four_processes_stay_under_the_tenant_limits(tenant: Tenant, redis_url: str) -> None:
    """Four processes pushing to one tenant at once (many PUTs, more activations than the
    hourly ceiling) get no 429, and ZIA's call log shows no limit exceeded."""
    start_at = time.time() + 4
    jobs = [Job(i, tenant.api_base, tenant.token_url, redis_url, start_at) for i in range(WORKERS)]
    context = multiprocessing.get_context("spawn")
    start = time.monotonic()
    with context.Pool(WORKERS) as pool:
        landed = pool.map_async(push, jobs).get(timeout=120)
    elapsed = time.monotonic() - start
    zia = tenant.zia
    assert landed == [ENTRIES_PER_WORKER] * WORKERS
    assert zia.count_429 == 0, _around_429(zia)
    assert zia.limit_violations() == []
    puts = [c for c in zia.calls if c.bucket == "PUT /urlCategories/{id}"]
    assert len(puts) == WORKERS * ENTRIES_PER_WORKER // BATCH_SIZE
    # The per-second limit of PUT is shared: sixteen PUTs cannot fit in less than 15 s.
    assert puts[-1].at - puts[0].at >= len(puts) - 1 - 0.5
    assert zia.activations == WORKERS * ACTIVATIONS_PER_WORKER
    for index in range(WORKERS):
        expected = {f"w{index}-{i}.example.net/x" for i in range(ENTRIES_PER_WORKER)}
        assert zia.active_urls(f"Fleet worker {index}") == expected
    assert elapsed < 60
