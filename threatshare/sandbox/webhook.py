"""A webhook receiver on loopback: what Slack, Teams or an on-call tool would be to the outbox.

It records every POST (path, headers, raw body), answers with a chosen status, and can go down
and come back on the same port (a receiver outage), so the tests see exactly what left
threatshare, and how often.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from threatshare.sandbox.server import EmulatorServer, Request, Response


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records the POSTs it receives on 127.0.0.1; ``status`` is what it answers."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._server: EmulatorServer | None = None
        #: The status of every answer (e.g. 503 for a receiver that is up but failing).
        self.status = 200

    def _app(self, request: Request) -> Response:
        with self._lock:
            self._received.append(
                Received(request.path, dict(request.headers.items()), request.body)
            )
        return Response(self.status, b"ok" if self.status < 300 else b"no")

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else self._port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def start(self) -> WebhookReceiver:
        """Listen (again, on the same port after a :meth:`stop`)."""
        self._server = EmulatorServer(self._app, self._port).start()
        self._port = self._server.port
        return self

    def stop(self) -> None:
        """Go down: connections are refused until :meth:`start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
