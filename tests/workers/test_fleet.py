"""The fleet end to end: 2 schedulers and 3 workers (real processes) on one Redis, 30 instances
on 5 emulated ZIA tenants that enforce ZIA's documented limits, for over two minutes, with one
worker killed (SIGKILL) in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from threatshare import keys
from threatshare.sandbox.mimecast import MimecastEmulator
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.world import Sandbox, to_toml
from threatshare.state.store import Store
from workers.scheduler import fleet_queue

from .processes import spawn, stop, tail, wait_for

INTERVAL = 10
TENANTS = ("t1", "t2", "t3", "t4", "t5")
INSTANCES = {
    f"i{n:02d}": {
        "zia": TENANTS[n % len(TENANTS)],
        "category": f"Fleet {n:02d}",
        "sources": ["malicious_urls"],
        "fetch_from": "2h",
    }
    for n in range(29)
}
# The 30th instance reads a slow Mimecast account, so a worker can be caught in its run.
INSTANCES["slow"] = {
    "mimecast": "slow",
    "zia": "t1",
    "category": "Fleet slow",
    "sources": ["malicious_urls"],
    "fetch_from": "2h",
}
RUN_FOR = 125.0  # seconds of new threats
NEW_THREAT_EVERY = 20.0
KILL_AFTER = 45.0


@dataclass
class Observed:
    """What the test saw while the fleet ran."""

    injected: dict[str, float] = field(default_factory=dict)  # entry -> epoch of its record
    live: set[str] = field(default_factory=set)  # entries injected while the fleet ran
    active_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (instance, entry)


@pytest.fixture
def slow_mimecast() -> Iterator[tuple[MimecastEmulator, EmulatorServer]]:
    emulator = MimecastEmulator(client_id="slow-client", client_secret="slow-secret", seed=1)
    emulator.latency = 2.0
    with EmulatorServer(emulator) as server:
        yield emulator, server


def write_config(
    sandbox: Sandbox, slow: MimecastEmulator, slow_url: str, path: Path, redis_url: str
) -> Path:
    settings = {
        "redis_url": redis_url,
        "interval": f"{INTERVAL}s",
        "settle": "0s",
        "overlap": "1m",
        "run_deadline": "30s",
        "log_format": "json",
    }
    text = sandbox.config(INSTANCES, settings=settings)
    account = slow.account(slow_url)
    text += to_toml(
        {
            "mimecast.slow": {
                "base_url": account.base_url,
                "client_id": account.client_id,
                "client_secret": account.client_secret.get_secret_value(),
            }
        }
    )
    path.write_text(text)
    path.chmod(0o600)
    return path


def threat(index: int) -> tuple[str, str]:
    return (
        f"https://t{index}.fleet-threat.example/p{index}",
        f"t{index}.fleet-threat.example/p{index}",
    )


def inject(
    sandbox: Sandbox,
    slow: MimecastEmulator,
    observed: Observed,
    index: int,
    when: datetime,
    *,
    live: bool,
) -> None:
    url, entry = threat(index)
    sandbox.mimecast.add_url_logs([url_log(url, when)])
    slow.add_url_logs([url_log(url, when)])
    observed.injected[entry] = when.timestamp()
    if live:
        observed.live.add(entry)


def watch_activations(sandbox: Sandbox, observed: Observed, stop_event: threading.Event) -> None:
    """Note when each threat first shows up as active in each category (every 0.25 s)."""
    while not stop_event.wait(0.25):
        now = time.time()
        for name, table in INSTANCES.items():
            zia = sandbox.tenants[table["zia"]].emulator
            for entry in zia.active_urls(table["category"]):
                observed.active_at.setdefault((name, entry), now)


def run_starts(logs: list[Path]) -> list[dict[str, str]]:
    """Every `run.start` line the workers logged (JSON), with its job id."""
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"run.start"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "run.start":
                found.append(event)
    return found


def kill_worker_in_run(
    client: redis.Redis, workers: list[subprocess.Popen[bytes]], instance: str
) -> int:
    """SIGKILL the worker running ``instance`` while its run holds the lock; its pid."""
    registry = StartedJobRegistry(queue=fleet_queue(client))

    def running() -> str | None:
        for job_id in registry.get_job_ids():
            if job_id.startswith(f"sync-{instance}-") and client.exists(
                keys.instance_lock(instance)
            ):
                return job_id
        return None

    job_id = wait_for(f"a run of {instance}", running, timeout=3 * INTERVAL, every=0.05)
    job = Job.fetch(job_id, connection=client, serializer=fleet_queue(client).serializer)
    pids = {w.name: w.pid for w in Worker.all(connection=client)}
    pid = pids[job.worker_name]
    assert pid in {w.pid for w in workers}
    os.kill(pid, signal.SIGKILL)
    return pid


def rerun_delay(
    logs: list[Path], instance: str, killed_run: str | None, killed_at: float
) -> float | None:
    """Seconds from the kill to the next run of ``instance`` that began, per the worker logs."""
    begun = [
        datetime.fromisoformat(run["timestamp"]).timestamp()
        for run in run_starts(logs)
        if run["instance"] == instance and run["run_id"] != killed_run
    ]
    after = [at for at in begun if at > killed_at]
    return min(after) - killed_at if after else None


def every_threat_active(sandbox: Sandbox, observed: Observed) -> bool:
    return all(
        set(observed.injected)
        <= sandbox.tenants[table["zia"]].emulator.active_urls(table["category"])
        for table in INSTANCES.values()
    )


@pytest.mark.slow
def test_fleet_shares_everything_within_limits_and_survives_a_killed_worker(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    slow_mimecast: tuple[MimecastEmulator, EmulatorServer],
) -> None:
    """Each instance runs at most once per slot, ZIA never answers 429 nor sees a limit
    exceeded, every threat ends up active in every category, and the instance of a worker
    killed mid-run runs again within two intervals, losing nothing."""
    slow, slow_server = slow_mimecast
    observed = Observed()
    store = Store(redis_client)
    with Sandbox(tenant_names=TENANTS, enforce_limits=True) as sandbox:
        config = write_config(
            sandbox, slow, slow_server.url, tmp_path / "threatshare.toml", redis_url
        )
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        for index in range(3):
            inject(sandbox, slow, observed, index, hour_ago + timedelta(minutes=index), live=False)

        roles = ("scheduler-1", "scheduler-2", "worker-1", "worker-2", "worker-3")
        logs = {role: tmp_path / f"{role}.log" for role in roles}
        processes = {role: spawn(config, role.split("-")[0], log=logs[role]) for role in roles}
        workers = [processes[role] for role in roles if role.startswith("worker")]
        stop_watching = threading.Event()
        watcher = threading.Thread(
            target=watch_activations, args=(sandbox, observed, stop_watching)
        )
        watcher.start()
        killed_pid: int | None = None
        killed_at = 0.0
        killed_run: str | None = None
        try:
            started = time.monotonic()
            index, next_threat = 3, started
            while time.monotonic() - started < RUN_FOR:
                if time.monotonic() >= next_threat:
                    now = datetime.now(UTC) - timedelta(seconds=1)
                    inject(sandbox, slow, observed, index, now, live=True)
                    index, next_threat = index + 1, next_threat + NEW_THREAT_EVERY
                if killed_pid is None and time.monotonic() - started >= KILL_AFTER:
                    killed_pid = kill_worker_in_run(redis_client, workers, "slow")
                    killed_at, killed_run = time.time(), store.load("slow").run_id
                time.sleep(0.1)
            wait_for(
                "every threat active in every category",
                lambda: every_threat_active(sandbox, observed),
                timeout=6 * INTERVAL,
                every=0.5,
            )
        finally:
            stop_watching.set()
            watcher.join(timeout=5)
            codes = {role: stop(process, timeout=40) for role, process in processes.items()}

        # SIGTERM stopped every process but the killed worker cleanly.
        assert killed_pid is not None
        for role, process in processes.items():
            expected = -signal.SIGKILL if process.pid == killed_pid else 0
            assert codes[role] == expected, f"{role} exited {codes[role]}:\n{tail(logs[role])}"

        # At most one run per instance per slot, and every run belongs to a slot's sync job.
        runs = run_starts(list(logs.values()))
        per_job = Counter((run["instance"], run.get("job_id")) for run in runs)
        assert not {key: n for key, n in per_job.items() if n > 1}
        for run in runs:
            assert str(run.get("job_id", "")).startswith(f"sync-{run['instance']}-"), run
        runs_per_instance = Counter(run["instance"] for run in runs)
        assert set(runs_per_instance) == set(INSTANCES)
        slots = RUN_FOR / INTERVAL
        assert min(runs_per_instance.values()) >= slots / 2, runs_per_instance
        assert max(runs_per_instance.values()) <= slots + 8, runs_per_instance

        # ZIA's limits held on every tenant: no 429, nothing answered beyond a limit.
        for name in TENANTS:
            zia = sandbox.tenants[name].emulator
            assert zia.count_429 == 0, name
            assert zia.limit_violations() == [], name

        # The killed worker's instance ran again within two intervals (plus a scheduler tick).
        rerun_after = rerun_delay(list(logs.values()), "slow", killed_run, killed_at)
        assert rerun_after is not None, "the killed worker's instance never ran again"
        assert rerun_after <= 2 * INTERVAL + 5, rerun_after

        latencies = [
            observed.active_at[(name, entry)] - observed.injected[entry]
            for name in INSTANCES
            for entry in observed.live
            if (name, entry) in observed.active_at
        ]
        p95 = statistics.quantiles(latencies, n=20)[-1]
        activations = {name: sandbox.tenants[name].emulator.activations for name in TENANTS}
        print(
            f"\nfleet: runs={sum(runs_per_instance.values())} rerun_after_kill={rerun_after:.1f}s"
            f" threat_to_active p50={statistics.median(latencies):.1f}s p95={p95:.1f}s"
            f" max={max(latencies):.1f}s activations={activations}"
        )
        assert p95 <= 4 * INTERVAL, p95
