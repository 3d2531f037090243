"""One Lua script called once per chunk, the calls sent as they are built and answered at the
end (docs/design.md#performance).

A write of many entries is cut into chunks (:mod:`threatshare.state.chunks`). Called one at a
time, each chunk waits for Redis's answer before the next is even built: the client and the
server take turns, and a pull's dedupe takes the sum of both. Sent as they are built, Redis
works through one chunk while the next is built, and the write takes about as long as Redis's
own share of it.

The calls go out as ``EVAL`` with the script's text rather than ``EVALSHA``: Redis compiles
a script once and finds it again by its digest, and an ``EVAL`` can never meet the ``NOSCRIPT``
answer that a restarted or flushed Redis gives a digest, which here would come back only after
the later chunks were already sent. The text (about a kilobyte) costs little beside each
chunk's tens of kilobytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis
from redis.commands.core import Script
from redis.typing import EncodableT

__all__ = ["call_per_chunk"]


def call_per_chunk(
    client: redis.Redis,
    script: Script,
    keys: Sequence[str],
    chunks: Iterable[Sequence[EncodableT]],
) -> list[object]:
    """Call ``script`` on ``keys`` with each of ``chunks`` as its arguments, in order, on one
    connection; the answers in the same order. Each chunk is sent as soon as it is built.

    Each chunk is carried out or refused on its own, as separate calls would be. The first
    error answer (or a lost connection) is raised once the answers before it were read; the
    connection is then closed rather than reused, since answers may still be in flight."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        sent = 0
        for args in chunks:
            connection.send_command("EVAL", script.script, len(keys), *keys, *args)
            sent += 1
        return [connection.read_response() for _ in range(sent)]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
