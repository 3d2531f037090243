"""The operations endpoint (docs/design.md#operations-endpoint): a read-only WSGI application
served by waitress.

``/metrics`` (Prometheus), ``/healthz`` (the process answers), ``/readyz`` (Redis answers),
``/api/status`` (the ``status --json`` document) and ``/`` (the status page). Each request reads
Redis afresh, so any process with the fleet's Redis serves the whole fleet. It never shows a
secret: it renders the status records, which hold none, and names a Redis failure by its type
only (an exception's text may carry the URL and its password). When Redis is down, ``/healthz``
still answers 200, ``/readyz`` and ``/api/status`` 503, and ``/`` shows a banner.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from prometheus_client import make_wsgi_app
from waitress.server import create_server

from threatshare.config import Config
from threatshare.errors import StoreUnavailable
from threatshare.ops import status
from threatshare.ops.explain import NotExplainable
from threatshare.ops.explain_page import ExplainPage, explain_query, query_of
from threatshare.ops.metrics import registry
from threatshare.ops.page import StatusPage
from threatshare.ops.snapshot import Snapshot, WorkerCount, take
from threatshare.state.store import Store

log = structlog.get_logger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
READ_ONLY = "GET, HEAD"
#: The page loads nothing and runs nothing: no script, no external asset.
PAGE_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]


#: What one client can hold of the endpoint. Idle sockets cost no thread (waitress serves them
#: from one event loop), but past ``connection_limit`` it stops accepting: hundreds is far above
#: a scraper, a probe and a few browsers, and poll() (not select()) copes with that many.
#: An idle connection is closed after ``channel_timeout`` (checked every ``cleanup_interval``),
#: so a flood of silent sockets clears within seconds. Every route is GET or HEAD: a body
#: announced over ``max_request_body_size`` is answered 413 from its headers, never read.
LIMITS: dict[str, int | bool] = {
    "connection_limit": 500,
    "channel_timeout": 15,
    "cleanup_interval": 5,
    "max_request_header_size": 16 * 1024,
    "max_request_body_size": 1024,
    "asyncore_use_poll": True,
}


def _now() -> datetime:
    return datetime.now(UTC)


class OperationsApp:
    """The WSGI application; ``now`` is the clock of every age it shows."""

    def __init__(
        self,
        config: Config,
        client: redis.Redis,
        *,
        now: Callable[[], datetime] = _now,
        workers: WorkerCount | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._now = now
        self._workers = workers
        self._metrics = make_wsgi_app(registry(self.snapshot))
        self._page = StatusPage()
        self._explain_page_template = ExplainPage()
        self._routes: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/api/status": self._api_status,
            "/api/explain": self._api_explain,
            "/explain": self._explain_page,
            "/": self._status_page,
        }

    def snapshot(self) -> Snapshot:
        return take(self._config, self._client, self._now, self._workers)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            return _send(start_response, "404 Not Found", "text/plain", b"not found\n")
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _send(
                start_response,
                "405 Method Not Allowed",
                "text/plain",
                b"read-only: GET or HEAD\n",
                [("Allow", READ_ONLY)],
            )
        if environ["REQUEST_METHOD"] == "HEAD" and route is self._metrics:
            environ = {**environ, "REQUEST_METHOD": "GET"}  # the server drops the body
        return route(environ, start_response)

    def _healthz(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _send(start_response, "200 OK", "text/plain", b"ok\n")

    def _readyz(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            self._client.ping()
        except (redis.RedisError, OSError) as exc:
            body = f"Redis cannot be reached ({type(exc).__name__})\n".encode()
            return _send(start_response, "503 Service Unavailable", "text/plain", body)
        return _send(start_response, "200 OK", "text/plain", b"ready\n")

    def _api_status(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            records = status.collect(self._config, Store(self._client))
            tenants = status.tenant_status(self._config, Store(self._client), self._now())
        except (redis.RedisError, StoreUnavailable, OSError) as exc:
            body = json.dumps({"error": f"Redis cannot be reached ({type(exc).__name__})"})
            return _send(
                start_response, "503 Service Unavailable", "application/json", body.encode()
            )
        body = status.render_json(records, tenants).encode()
        return _send(start_response, "200 OK", "application/json", body)

    def _api_explain(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            result = explain_query(self._config, self._client, query_of(environ))
        except NotExplainable as exc:
            body = json.dumps({"error": str(exc)}).encode()
            return _send(start_response, "400 Bad Request", "application/json", body)
        except (redis.RedisError, StoreUnavailable, OSError) as exc:
            body = json.dumps({"error": f"Redis cannot be reached ({type(exc).__name__})"})
            return _send(
                start_response, "503 Service Unavailable", "application/json", body.encode()
            )
        body = json.dumps(result.to_json()).encode()
        return _send(start_response, "200 OK", "application/json", body)

    def _explain_page(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        query = query_of(environ)
        result, error = None, None
        if query:
            try:
                result = explain_query(self._config, self._client, query)
            except NotExplainable as exc:
                error = str(exc)
            except (redis.RedisError, StoreUnavailable, OSError) as exc:
                error = f"Redis cannot be reached ({type(exc).__name__})"
        body = self._explain_page_template.render(query, result, error).encode()
        return _send(start_response, "200 OK", "text/html; charset=utf-8", body, PAGE_HEADERS)

    def _status_page(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        body = self._page.render(self.snapshot()).encode()
        return _send(start_response, "200 OK", "text/html; charset=utf-8", body, PAGE_HEADERS)


def _send(
    start_response: StartResponse,
    code: str,
    content_type: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *(extra or []),
    ]
    start_response(code, headers)
    return [body]


class Endpoint:
    """The app bound to ``host:port`` by waitress; :meth:`serve` blocks, :meth:`start` runs it
    in a background thread (``threatshare run``), :meth:`close` stops either."""

    def __init__(self, app: OperationsApp, host: str, port: int) -> None:
        # A few threads: scrapes and page loads are short; ident names no server version.
        # The rest bounds what a client can hold (docs/design.md#operations-endpoint).
        self._server = create_server(
            app, host=host, port=port, threads=4, ident="threatshare", **LIMITS
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)  # type: ignore[union-attr]

    @property
    def host(self) -> str:
        return str(self._server.effective_host)  # type: ignore[union-attr]

    def serve(self) -> None:
        log.info("ops.listening", host=self.host, port=self.port)
        self._server.run()

    def start(self) -> Endpoint:
        self._thread = threading.Thread(target=self.serve, name="ops-endpoint", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
