"""Whatever fails under a command becomes one line naming the cause and the place, and the
command's documented exit code; never a traceback (docs/design.md#command-line).

``redis 10.0.0.5:6379: connection refused``, ``state_dir /var/lib/threatshare: in use by pid
4242``, ``/etc/threatshare.toml: permission denied``. The cause is read from the operating
system's error (its errno) where there is one, and every configured secret is removed from the
line (a Redis URL's password never shows).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import redis

from threatshare.commands.base import EXIT_FAILED, EXIT_UNREACHABLE
from threatshare.config import Config
from threatshare.embedded import SOCKET_NAME, EmbeddedRedisError
from threatshare.errors import StoreUnavailable, ThreatshareError
from threatshare.scrub import Scrubber

#: How deep into ``__cause__`` / ``__context__`` the cause is looked for.
MAX_CHAIN = 12


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, nearest first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def cause_of(exc: BaseException) -> str:
    """In a few plain words why the connection failed: ``connection refused``, ``timed
    out``, ``name not known``; else the error's class."""
    for link in chain(exc):
        if isinstance(link, socket.gaierror):
            return "host name not known"
        if isinstance(link, TimeoutError | socket.timeout | redis.TimeoutError):
            return "timed out"
        if isinstance(link, redis.AuthenticationError):
            return "authentication failed (check the password in redis_url)"
        if isinstance(link, OSError) and link.errno:
            return os.strerror(link.errno).lower()
    return type(exc).__name__


def redis_place(config: Config | None) -> str:
    """Where Redis was looked for: ``host:port`` or the socket's path, never the password."""
    if config is None:
        return "(embedded)"
    if config.settings.redis_url is None:
        return str(config.settings.resolved_state_dir / SOCKET_NAME)
    parsed = urlsplit(config.settings.redis_url.get_secret_value())
    if parsed.scheme == "unix":
        return parsed.path
    return f"{parsed.hostname}:{parsed.port or 6379}"


def _is_redis_failure(exc: BaseException) -> bool:
    return any(isinstance(link, redis.RedisError | StoreUnavailable) for link in chain(exc))


def one_line(exc: BaseException, config: Config | None, command: str) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit code to leave with."""
    scrub = Scrubber(config.secret_values() if config is not None else ())
    if isinstance(exc, EmbeddedRedisError):
        return scrub(str(exc), 300), EXIT_UNREACHABLE
    if _is_redis_failure(exc):
        return f"redis {redis_place(config)}: {cause_of(exc)}", EXIT_UNREACHABLE
    if isinstance(exc, ThreatshareError):
        return scrub(f"{command}: {exc}", 300), EXIT_FAILED
    if isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename if exc.filename is not None else command
        reason = os.strerror(exc.errno).lower() if exc.errno in errno.errorcode else str(exc)
        return scrub(f"{where}: {reason}", 300), EXIT_FAILED
    return scrub(f"{command}: unexpected {type(exc).__name__}: {exc}", 300), EXIT_FAILED
