"""A small threaded HTTP/1.1 server on loopback that the emulators plug into.

An emulator is a callable ``app(Request) -> Response``. The server gives it parsed requests,
writes its responses with keep-alive, and can drop a connection mid-response when the app
asks for it (fault tests). Every server also has the :meth:`EmulatorServer.send_gzip_bombs`
knob: the next answers are a small gzip body that inflates to 1 GiB, and the
``echo_credentials`` one: every refusal quotes the credentials its request carried, as a
careless upstream does (hostile-upstream tests). It binds 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("latin-1")).items()}

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # bytes are sent as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the headers and half the body, then close the socket (a dropped connection).
    drop: bool = False

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        self.headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body, separators=(",", ":")).encode()


App = Callable[[Request], Response]

GIB = 1024**3


@functools.cache
def gzip_bomb(inflated: int = GIB) -> bytes:
    """A gzip body of about ``inflated / 1000`` bytes that inflates to ``inflated`` bytes of a
    JSON-looking answer. Compressed piece by piece: the inflated text is never in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head = b'{"data": [{"padding": "'
    parts = [compressor.compress(head)]
    piece = b"a" * (1024 * 1024)
    left = inflated - len(head)
    while left > 0:
        parts.append(compressor.compress(piece[: min(left, len(piece))]))
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts)


def _sent_credentials(request: Request) -> list[str]:
    """What a request authenticated with: the Authorization value (without its scheme), the
    Cookie header, and the secret fields of a form or JSON body."""
    sent = [request.headers.get("Authorization", "").partition(" ")[2]]
    sent.append(request.headers.get("Cookie", ""))
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        sent.append(request.form().get("client_secret", ""))
    elif content_type.startswith("application/json"):
        try:
            body = request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            sent.extend(str(body.get(name) or "") for name in ("apiKey", "password"))
    return [value for value in sent if value]


def _quoting(value: Any, echo: str) -> Any:
    if isinstance(value, dict):
        return {
            k: f"{v} {echo}"
            if k in ("message", "error_description") and isinstance(v, str)
            else _quoting(v, echo)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_quoting(v, echo) for v in value]
    return value


def echoing_credentials(response: Response, request: Request) -> Response:
    """``response`` with every ``message`` and ``error_description`` quoting the credentials
    ``request`` carried."""
    sent = _sent_credentials(request)
    if not sent or isinstance(response.body, bytes) or response.body is None:
        return response
    echo = "(credentials sent: " + ", ".join(sent) + ")"
    return Response(response.status, _quoting(response.body, echo), dict(response.headers))


def gzip_bomb_response() -> Response:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return Response(status=200, body=gzip_bomb(), headers=headers)


def json_response(status: int, body: Any, **headers: str) -> Response:
    return Response(status=status, body=body, headers=dict(headers))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small answers on a kept-alive connection otherwise wait ~40 ms for Nagle + delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the emulators keep their own call logs

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        try:
            bomb = self.server.take_gzip_bomb(request.path)
            response = gzip_bomb_response() if bomb else self.server.app(request)
            if self.server.echo_credentials and response.status >= 400:
                response = echoing_credentials(response, request)
        except Exception as exc:  # an emulator bug must show up as a 500, not a hang
            response = json_response(500, {"message": f"emulator error: {exc!r}"})
        payload = response.encoded()
        # The app's own Date header, when it keeps a clock of its own, replaces the server's.
        headers = {k: v for k, v in response.headers.items() if k.lower() != "date"}
        date = next((v for k, v in response.headers.items() if k.lower() == "date"), None)
        self.log_request(response.status)
        self.send_response_only(response.status)
        self.send_header("Server", self.version_string())
        self.send_header("Date", date or self.date_time_string())
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if response.drop:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, app: App, port: int) -> None:
        self.app = app
        #: Every refusal quotes the credentials its request carried.
        self.echo_credentials = False
        self._bombs_lock = threading.Lock()
        self._bombs: list[tuple[str, int]] = []  # (path prefix, answers left)
        super().__init__(("127.0.0.1", port), _Handler)

    def add_gzip_bombs(self, path_prefix: str, count: int) -> None:
        with self._bombs_lock:
            self._bombs.append((path_prefix, count))

    def take_gzip_bomb(self, path: str) -> bool:
        with self._bombs_lock:
            for i, (prefix, left) in enumerate(self._bombs):
                if path.startswith(prefix) and left > 0:
                    self._bombs[i] = (prefix, left - 1)
                    return True
        return False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a timeout, or one that needs only the status
        # line) is normal traffic, not an emulator fault worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Serve ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app: App, port: int = 0) -> None:
        self._server = _Server(app, port)
        self._thread: threading.Thread | None = None

    def send_gzip_bombs(self, path_prefix: str = "/", count: int = 1) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with a
        1 MB gzip body that inflates to 1 GiB (:func:`gzip_bomb`)."""
        gzip_bomb()  # built now, not while a client waits for its answer
        self._server.add_gzip_bombs(path_prefix, count)

    @property
    def echo_credentials(self) -> bool:
        """Whether every answer of 400 or more quotes the credentials its request carried."""
        return self._server.echo_credentials

    @echo_credentials.setter
    def echo_credentials(self, on: bool) -> None:
        self._server.echo_credentials = on

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sleep_latency(seconds: float) -> None:
    """Emulated network latency (a knob of every emulator)."""
    if seconds > 0:
        time.sleep(seconds)
