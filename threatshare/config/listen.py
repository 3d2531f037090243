"""The ``HOST:PORT`` an operations endpoint binds (``settings.listen``, ``serve --listen``)."""

from __future__ import annotations

import re

DEFAULT_LISTEN = "127.0.0.1:9410"
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$")


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9410"`` -> ``("127.0.0.1", 9410)``; IPv6 in brackets (``"[::1]:9410"``).
    Raises ValueError naming what is wrong."""
    host, sep, port = str(value).strip().rpartition(":")
    if not sep or not host or not _HOST.match(host):
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9410 or [::1]:9410")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must end in a port from 1 to 65535")
    return host.strip("[]"), int(port)
