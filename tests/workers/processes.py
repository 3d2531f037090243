"""threatshare commands as real child processes, for the worker, single-machine and fleet tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def spawn(
    config: Path, *command: str, log: Path, marker: Path | None = None
) -> subprocess.Popen[bytes]:
    """``threatshare --config CONFIG COMMAND…`` with its output in ``log``; ``marker`` is a file
    a forged job would write, for the allow-list tests."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("THREATSHARE_")}
    if marker is not None:
        env["THREATSHARE_TEST_MARKER"] = str(marker)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "threatshare.cli", "--config", str(config), *command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then the exit code (SIGKILL and -9 if it does not exit in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
        return -9


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """The first truthy value of ``check()`` within ``timeout`` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def tail(log: Path, lines: int = 40) -> str:
    """The end of a process log, for assertion messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
