"""Logging never prints a secret (docs/design.md#logs)."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from pydantic import SecretStr

from threatshare import logs

pytestmark = pytest.mark.usefixtures("restore_logging")


def capture(fmt: str = "json") -> io.StringIO:
    buf = io.StringIO()
    logs.configure(fmt, stream=buf)  # type: ignore[arg-type]
    return buf


class TestRedaction:
    def test_secret_values_and_keys_are_masked(self) -> None:
        """SecretStr values, credential-named keys and bearer/JWT text are masked."""
        buf = capture()
        structlog.get_logger().info(
            "evt",
            password="hunter2",
            client_secret=SecretStr("s3cr3t"),
            note="Authorization: Bearer abc.def.ghi",
            jwt="x eyJhbGciOi.eyJzdWIiOiIx.sig y",
            count=3,
        )
        line = json.loads(buf.getvalue().splitlines()[0])
        assert line["password"] == logs.MASK
        assert line["client_secret"] == logs.MASK
        assert "abc.def.ghi" not in line["note"]
        assert "eyJhbGciOi" not in buf.getvalue()
        assert line["count"] == 3

    def test_stdlib_loggers_are_redacted_too(self) -> None:
        """Lines from stdlib logging (RQ, httpx2) go through the same masking."""
        buf = capture()
        logging.getLogger("rq.worker").warning("cookie JSESSIONID=abcdef123; path=/")
        assert "abcdef123" not in buf.getvalue()
        assert "JSESSIONID=" in buf.getvalue()

    def test_context_is_carried(self) -> None:
        """Bound instance and run_id appear on every line of a run."""
        buf = capture()
        structlog.contextvars.bind_contextvars(instance="a", run_id="r1")
        try:
            structlog.get_logger().info("one")
        finally:
            structlog.contextvars.clear_contextvars()
        line = json.loads(buf.getvalue())
        assert (line["instance"], line["run_id"]) == ("a", "r1")


class TestThirdPartyLoggers:
    def test_library_chatter_stays_out_unless_asked(self) -> None:
        """aiosmtpd's and asyncio's INFO lines are dropped; a WARNING, or INFO when asked, shows."""
        buf = capture()
        logging.getLogger("mail.log").info("('127.0.0.1', 1) >> b'ehlo vm'")
        logging.getLogger("asyncio").info("loop chatter")
        logging.getLogger("mail.log").warning("sink trouble")
        lines = [json.loads(line)["event"] for line in buf.getvalue().splitlines()]
        assert lines == ["sink trouble"]
        asked = io.StringIO()
        logs.configure("json", stream=asked, third_party_level=logging.INFO)
        logging.getLogger("mail.log").info("now wanted")
        assert [json.loads(line)["event"] for line in asked.getvalue().splitlines()] == [
            "now wanted"
        ]
