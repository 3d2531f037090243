"""A real `threatshare serve` bounds what clients can hold: hundreds of idle or half-sent
connections never starve `/healthz`, idle ones are closed after a short timeout, and a large
request body is refused from its headers without being read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.workers.processes import spawn, stop, tail, wait_for
from threatshare.embedded import free_port
from threatshare.ops.server import LIMITS

IDLE = 150
HALF_SENT = 50


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def endpoint(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, int]]:
    """`threatshare serve` as a child process on a free loopback port: (host, port)."""
    config = tmp_path / "threatshare.toml"
    config.write_text(f'[settings]\nredis_url = "{redis_url}"\nlog_format = "json"\n')
    port = free_port()
    log = tmp_path / "serve.log"
    process = spawn(config, "serve", "--listen", f"127.0.0.1:{port}", log=log)
    try:
        try:
            wait_for("serve to answer", lambda: _answers(f"http://127.0.0.1:{port}"), 30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{tail(log)}") from None
        yield "127.0.0.1", port
    finally:
        stop(process)


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    return sock


def _read_status(sock: socket.socket) -> str:
    """The status line of the answer on ``sock`` (read within its timeout)."""
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def test_two_hundred_idle_connections_do_not_starve_healthz(
    endpoint: tuple[str, int],
) -> None:
    """With 150 silent sockets and 50 half-sent requests open, `/healthz` answers in under 2 s;
    the idle sockets are then closed by the server within its channel timeout."""
    held: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            held.append(_connect(endpoint))
        for _ in range(HALF_SENT):
            sock = _connect(endpoint)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
            held.append(sock)
        started = time.monotonic()
        response = httpx.get(f"http://{endpoint[0]}:{endpoint[1]}/healthz", timeout=2)
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and elapsed < 2.0, elapsed
        first, half_sent = held[0], held[-1]
        bound = float(LIMITS["channel_timeout"]) + float(LIMITS["cleanup_interval"]) + 10
        first.settimeout(bound)
        half_sent.settimeout(bound)
        assert first.recv(1) == b""  # the server hung up on the idle client
        assert half_sent.recv(1) == b""
    finally:
        for sock in held:
            sock.close()


def test_a_large_body_is_refused_from_its_headers(endpoint: tuple[str, int]) -> None:
    """A request announcing 1 GB gets 413 before a byte of its body is sent, a chunked body
    is cut off at the limit, and the endpoint still answers afterwards."""
    with _connect(endpoint) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        assert _read_status(sock).startswith("HTTP/1.1 413")
    with _connect(endpoint) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        try:
            for _ in range(64):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server may close before we finish: that is the point
        assert _read_status(sock).startswith("HTTP/1.1 413")
    assert httpx.get(f"http://{endpoint[0]}:{endpoint[1]}/healthz", timeout=2).status_code == 200
