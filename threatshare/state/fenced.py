"""Writes fenced by a run's lock token (docs/design.md#the-fleet): every write that could undo
another run's work (forgetting entries, moving the bookmark) runs in one Lua call that first checks
the instance's lock still holds the writer's token, so a run whose lock lapsed cannot clobber its
successor.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from threatshare import keys
from threatshare.errors import LockLost
from threatshare.state.chunks import WRITE_CHUNK, chunked
from threatshare.state.lock import RunLock

# KEYS[1] the lock, KEYS[2] the key written; ARGV[1] the token, ARGV[2] the command, then its
# arguments. The command is threatshare's own (a literal of this package), never read from Redis.
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
return {1, redis.call(ARGV[2], KEYS[2], unpack(ARGV, 3))}
"""
#: Commands a fenced write may run.
FENCEABLE = frozenset({"HDEL", "DEL", "HSET", "ZREM", "SREM"})


class FencedWriter:
    """Runs one Redis command on one key of an instance, only while ``lock`` is the holder's."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_FENCED)

    def call(self, name: str, lock: RunLock, command: str, key: str, *args: object) -> object:
        """``command key *args`` when ``lock`` still holds instance ``name``; else LockLost.
        At most :data:`~threatshare.state.chunks.WRITE_CHUNK` arguments (Lua's ``unpack``
        stops near 8,000): more go through :meth:`call_each`."""
        if command not in FENCEABLE:
            raise ValueError(f"{command} is not a fenced write")
        if len(args) > WRITE_CHUNK + 1:
            raise ValueError(f"a fenced {command} of {len(args)} arguments: use call_each")
        done = self._script(keys=[keys.instance_lock(name), key], args=[lock.token, command, *args])
        if not done or not int(done[0]):
            lock.mark_lost()
            raise LockLost(f"instance {name}: the run's lock is gone; nothing more is written")
        return done[1] if len(done) > 1 else None

    def call_each(
        self, name: str, lock: RunLock, command: str, key: str, members: Iterable[object]
    ) -> None:
        """``command key member...`` for every one of ``members``, in fenced calls of at most
        :data:`~threatshare.state.chunks.WRITE_CHUNK` members; each call checks the lock."""
        for chunk in chunked(members):
            self.call(name, lock, command, key, *chunk)
