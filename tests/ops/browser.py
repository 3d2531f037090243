"""Headless chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
fd 3 in, fd 4 out, one JSON message per NUL-terminated line), so a test can set the viewport,
load a page, measure where its elements are laid out and take a screenshot — without a
WebSocket library, and without the page running any script of its own."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

TIMEOUT = 60.0

#: Headless, without chromium's own sandbox (CI runs as root), and quiet: no traffic but loopback.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class Browser:
    """One headless chromium with one page; use as a context manager."""

    def __init__(self, executable: str, profile: Path) -> None:
        self._executable = executable
        self._profile = profile
        self._next_id = 0
        self._buffer = b""
        self._session: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Browser:
        to_chromium_r, self._to_chromium = os.pipe()
        self._from_chromium, from_chromium_w = os.pipe()
        self._process = subprocess.Popen(
            [
                self._executable,
                *HEADLESS,
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=_fds(to_chromium_r, from_chromium_w),
        )
        os.close(to_chromium_r)
        os.close(from_chromium_w)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.call("Browser.close", session=False)
        if self._process is not None:
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        for fd in (self._to_chromium, self._from_chromium):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- protocol -----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_chromium, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chromium], [], [], left)
            if ready:
                chunk = os.read(self._from_chromium, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, *, session: bool = True, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events met meanwhile are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self._session is not None:
            message["sessionId"] = self._session
        self._send(message)
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline)
            if message.get("method") == method:
                params: dict[str, Any] = message.get("params", {})
                return params

    # -- what a test needs --------------------------------------------------------------------

    def open(self, url: str, width: int, height: int, *, mobile: bool) -> None:
        """Load ``url`` in a viewport of ``width`` x ``height`` CSS pixels."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools, not the page's own
        script: the page's Content-Security-Policy allows none)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"])[:500])
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The viewport as a PNG file."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


def _fds(to_chromium_r: int, from_chromium_w: int) -> Any:
    def arrange() -> None:
        # In the child, before exec: our read end becomes fd 3, our write end fd 4 (moved above
        # 10 first, in case either already is 3 or 4).
        high_r = fcntl.fcntl(to_chromium_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_chromium_w, fcntl.F_DUPFD, 10)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    return arrange
