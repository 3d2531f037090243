"""What the benchmarks share: a Redis server, a sandbox configuration, timing, percentiles."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from threatshare import config as config_module
from threatshare.config import Config
from threatshare.http import RetryPolicy
from threatshare.sandbox.world import Sandbox

#: Retries that do not stretch a benchmark run (the emulators fail nothing on purpose here).
BENCH_POLICY = RetryPolicy(max_attempts=8, initial_wait=0.05, max_wait=1.0, jitter=0.05)


def write_config(
    sandbox: Sandbox,
    path: Path,
    instances: Mapping[str, Mapping[str, Any]],
    redis_url: str,
    settings: Mapping[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A configuration of ``instances`` on ``sandbox``'s upstreams, plus ``extra`` TOML."""
    merged = {"redis_url": redis_url, "log_format": "json", **(settings or {})}
    path.write_text(sandbox.config(instances, settings=merged) + extra)
    path.chmod(0o600)
    return path


def load(path: Path) -> Config:
    return config_module.load(path, environ_overrides=False)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Stopwatch:
    """Wall time of a ``with`` block, in seconds."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


@contextlib.contextmanager
def one_core_each(server_pid: int | None) -> Iterator[dict[str, int] | None]:
    """The calling thread (the one that measures) on one core and the Redis server
    (``server_pid``, a process of this machine) on another, for the block; both as they were
    after it. Yields the two cores, or None when there is no server process to place or fewer
    than two cores to use.

    A measurement "on one core" is of our code on one core. Left to the scheduler, the bench and
    its Redis sometimes share a core on a 2-core machine: Redis's share of the dedupe then
    comes out of our core's time, and the same code measures a tenth slower at random."""
    if server_pid is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    own, theirs = os.sched_getaffinity(0), os.sched_getaffinity(server_pid)
    cores = sorted(own)
    if len(cores) < 2:
        yield None
        return
    os.sched_setaffinity(0, {cores[0]})
    os.sched_setaffinity(server_pid, {cores[1]})
    try:
        yield {"bench": cores[0], "redis": cores[1]}
    finally:
        os.sched_setaffinity(0, own)
        with contextlib.suppress(ProcessLookupError):  # the server may have stopped
            os.sched_setaffinity(server_pid, theirs)
