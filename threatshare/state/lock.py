"""The run lock of one instance (S5, S9): one run at a time, fleet-wide.

A short lease renewed from a thread while the run lives, so a dead worker's instance is free
again within one lease; its token fences the writes only the holder may make (the bookmark,
:meth:`threatshare.state.store.Store.finish_ok`).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import redis
import structlog
from redis.lock import Lock

from threatshare import keys

log = structlog.get_logger(__name__)


class RunLock:
    """The lock of one run: a short lease that :meth:`kept_alive` renews while the run lives,
    so a dead worker's instance is free again within one lease. ``token`` fences the writes
    that must come from its owner."""

    def __init__(self, lock: Lock, lease: float) -> None:
        self.lock = lock
        self.lease = lease

    @property
    def token(self) -> str:
        raw = self.lock.local.token
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    @contextlib.contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the lease every third of it, from a thread, until the block ends."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease / 3):
                try:
                    self.lock.reacquire()
                except redis.exceptions.LockError:
                    return  # lapsed or taken over: the run's fenced writes will refuse
                except redis.RedisError as exc:
                    log.warning("lock.renew_failed", error=type(exc).__name__)

        thread = threading.Thread(target=renew, name="run-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def release(self) -> None:
        # An expired lock may be another run's now: there is nothing of ours to release.
        with contextlib.suppress(redis.exceptions.LockError):
            self.lock.release()


def try_lock(client: redis.Redis, name: str, lease: float) -> RunLock | None:
    """The instance's run lock, or None when another run holds it (fleet-wide)."""
    lock = client.lock(keys.instance_lock(name), timeout=lease, blocking=False, thread_local=False)
    return RunLock(lock, lease) if lock.acquire(token=uuid.uuid4().hex) else None
