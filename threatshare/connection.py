"""Redis set-up: the configured Redis, or the embedded one of single-machine mode.

The one way every entry point (the CLI, the fleet's processes in ``workers/``, the demo) gets its
Redis connection, so the connection options and the embedded server's ownership are decided in
one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from threatshare.config import Config
from threatshare.embedded import connect_or_start

#: Seconds to open a connection to Redis (redis-py makes one attempt per command).
CONNECT_TIMEOUT = 5.0


@contextlib.contextmanager
def redis_for(config: Config, *, long_lived: bool = False) -> Iterator[redis.Redis]:
    """The configured Redis, or the embedded one in ``state_dir`` (started if not running;
    a ``long_lived`` process owns it, so a short command never stops it under the process)."""
    server = None
    if config.settings.redis_url is not None:
        url = config.settings.redis_url.get_secret_value()
    else:
        url, server = connect_or_start(config.settings.resolved_state_dir, own=long_lived)
    # A host that does not answer costs seconds, not the operating system's minutes of TCP
    # retries: an interactive command gives up within 30 s (docs/design.md#command-line).
    client = redis.Redis.from_url(
        url, socket_timeout=30, socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=30
    )
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.stop()
