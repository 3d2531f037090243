"""The run lock of one instance (docs/design.md#the-fleet): one run at a time, fleet-wide.

A short lease renewed from a thread while the run lives, so a dead worker's instance is free
again within one lease; its token fences the writes only the holder may make
(:mod:`threatshare.state.fenced`, and the bookmark in
:meth:`threatshare.state.store.Store.finish_ok`).

A run that can no longer renew its lease (another run took it, or Redis did not answer for a
whole lease) is *lost*: :meth:`RunLock.check`, called by the run between pages and batches,
raises :class:`~threatshare.errors.LockLost` from then on, and the run stops at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import redis
import structlog
from redis.lock import Lock

from threatshare import keys
from threatshare.errors import LockLost

log = structlog.get_logger(__name__)


class RunLock:
    """The lock of one run: a short lease that :meth:`kept_alive` renews while the run lives,
    so a dead worker's instance is free again within one lease. ``token`` fences the writes
    that must come from its owner."""

    def __init__(self, lock: Lock, lease: float) -> None:
        self.lock = lock
        self.lease = lease
        self._lost = threading.Event()
        self._renewed_at = time.monotonic()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def mark_lost(self) -> None:
        """The lock is known to be gone (a fenced write was refused, or renewal failed)."""
        self._lost.set()

    def check(self) -> None:
        """Raise LockLost unless this run still holds the lock: known lost, its lease not
        renewed for a whole lease, or (one GET) the lock holding another token."""
        if not self.lost and time.monotonic() - self._renewed_at >= self.lease:
            self.mark_lost()
        if not self.lost and self.lock.redis.get(self.lock.name) != self.token.encode():
            self.mark_lost()
        if self.lost:
            raise LockLost("the run's lock lapsed or was taken over; the run stops here")

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
                    self._renewed_at = time.monotonic()
                except redis.exceptions.LockError:
                    log.warning("lock.lost", reason="lapsed or taken over")
                    self.mark_lost()
                    return
                except redis.RedisError as exc:
                    log.warning("lock.renew_failed", error=type(exc).__name__)
                    if time.monotonic() - self._renewed_at >= self.lease:
                        self.mark_lost()  # the lease has run out meanwhile: assume it is gone
                        return

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
