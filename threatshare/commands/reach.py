"""Redis for a command, reached before any work starts: a Redis that cannot be reached is
reported in one line at once (:mod:`threatshare.commands.failures`), not half-way through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from threatshare.config import Config
from threatshare.connection import redis_for


@contextlib.contextmanager
def reached(config: Config, *, long_lived: bool = False) -> Iterator[redis.Redis]:
    """The command's Redis (see :func:`threatshare.connection.redis_for`), answering PING."""
    with redis_for(config, long_lived=long_lived) as client:
        client.ping()
        yield client


def ensure_reachable(config: Config) -> None:
    """PING the configured Redis once, so that a fleet process that cannot reach it says so in
    one line before it starts. The embedded Redis needs no probe: its owner starts it."""
    if config.settings.redis_url is None:
        return
    with reached(config):
        pass
