"""Hostile Mimecast data (docs/design.md#entries, docs/design.md#the-bookmark-and-the-window): wrong
types, missing fields, non-JSON, invalid UTF-8, oversized answers, very long strings, control
characters and header-injection attempts. No crash, a clear error of the right kind, the bookmark
unchanged on error, bad records counted as rejected by reason, and the rest shared."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e import FAST, run_in_process
from threatshare import config as config_module
from threatshare.config import Config
from threatshare.http_limits import MAX_RESPONSE_BYTES
from threatshare.indicators.grammar import is_valid_entry
from threatshare.sandbox.mimecast import url_log
from threatshare.sandbox.server import EmulatorServer, Request, Response, json_response
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store
from threatshare.sync import RunResult

URL_PATH = "/api/ttp/url/get-logs"
INSTANCE = {
    "zia": "prod",
    "category": "Hostile URLs",
    "sources": ["malicious_urls", "url_domains"],
    "notify": ["lab@example.com"],
}
INJECTION = "x\r\nBcc: attacker@evil.example\r\nSubject: pwned"


@dataclass
class Tamper:
    """Wraps the Mimecast emulator: adds raw entries to URL-log pages, or serves raw answers."""

    inner: Any
    extra_entries: list[Any] = field(default_factory=list)
    answers: deque[Response] = field(default_factory=deque)

    def __call__(self, request: Request) -> Response:
        if request.path == URL_PATH and self.answers:
            return self.answers.popleft()
        response = self.inner(request)
        if request.path != URL_PATH or response.status != 200 or not self.extra_entries:
            return response
        if "from" in json.dumps(request.json()):  # a window's page, not a look at the clock
            body = response.body
            if not body["data"]:
                body["data"] = [{"clickLogs": []}]
            body["data"][0]["clickLogs"].extend(self.extra_entries)
            self.extra_entries = []
        return response


@dataclass
class Hostile:
    sandbox: Sandbox
    tamper: Tamper
    config: Config
    redis_url: str

    def run(self) -> RunResult:
        return run_in_process(self.config, self.redis_url)["hostile"]

    def active(self) -> set[str]:
        return self.sandbox.tenants["prod"].emulator.active_urls(INSTANCE["category"])

    def bookmark(self) -> datetime | None:
        return Store(redis.Redis.from_url(self.redis_url)).load("hostile").bookmark

    def add(self, *records: dict[str, Any]) -> None:
        self.sandbox.mimecast.add_url_logs(records)


def recent(seconds: int = 60) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


@pytest.fixture
def hostile(tmp_path: Path, redis_url: str) -> Iterator[Hostile]:
    with Sandbox() as sandbox:
        tamper = Tamper(sandbox.mimecast)
        with EmulatorServer(tamper) as server:
            settings = {"redis_url": redis_url, "settle": "0s", "run_deadline": "10s"}
            text = sandbox.config({"hostile": INSTANCE}, settings=settings)
            path = tmp_path / "threatshare.toml"
            path.write_text(text.replace(sandbox.mimecast_url, server.url))
            path.chmod(0o600)
            yield Hostile(sandbox, tamper, config_module.load(path), redis_url)


def _after_clean_run(hostile: Hostile) -> datetime:
    hostile.add(url_log("https://good.example/first", recent(120)))
    first = hostile.run()
    assert first.outcome == "ok"
    bookmark = hostile.bookmark()
    assert bookmark is not None
    return bookmark


class TestBadRecords:
    def test_wrong_types_and_missing_fields_are_rejected_and_the_rest_shared(
        self, hostile: Hostile
    ) -> None:
        """Records with a URL of a wrong type or none are rejected as malformed; good ones land."""
        at = recent()
        hostile.add(
            url_log("https://good.example/ok", at),
            {**url_log("x", at), "url": 12345},
            {**url_log("x", at), "url": None},
            {**url_log("x", at), "url": ["https://list.example/"]},
            {k: v for k, v in url_log("x", at).items() if k != "url"},
        )
        hostile.tamper.extra_entries = ["a string", 42, None, ["nested"], True]
        result = hostile.run()
        assert result.outcome == "ok"
        rejected = result.counters["rejected_by_reason"]
        assert rejected["malformed_record"] == 4 + 5
        assert hostile.active() == {"good.example/ok", "good.example"}
        assert result.counters["pulled"] == 5 + 5

    def test_long_strings_and_control_characters_never_reach_zia(self, hostile: Hostile) -> None:
        """Over-long URLs and labels and control characters are rejected or shaped; every entry
        sent is valid and printable, and the host of an over-long URL is still shared."""
        at = recent()
        long_path = "https://long-path.example/" + "a" * 5000
        hostile.add(
            url_log(long_path, at),
            url_log("https://" + "b" * 64 + ".example/x", at),
            url_log("https://" + "c" * 300 + "/x", at),
            url_log("https://nul\x00.example/x", at),
            url_log("https://bell.example/\x07\x1b[31m", at),
            url_log("https://tab\t.example/x\r\ny", at),
            url_log("x" * 200_000, at),
        )
        result = hostile.run()
        assert result.outcome == "ok"
        active = hostile.active()
        assert "long-path.example" in active
        assert not any("a" * 1000 in entry for entry in active)
        assert all(is_valid_entry(entry) and entry.isprintable() for entry in active)
        assert result.counters["rejected_by_reason"] == {
            "too_long": 1,
            "label_too_long": 1,
            "host_too_long": 2,
            "unparsable": 1,
        }
        assert "tab.example/xy" in active  # tabs and newlines go, as a browser drops them

    def test_header_injection_in_a_url_is_shaped_not_obeyed(self, hostile: Hostile) -> None:
        """A URL carrying CRLF and a Bcc header becomes an ordinary percent-encoded entry."""
        hostile.add(url_log("https://inject.example/" + INJECTION, recent()))
        result = hostile.run()
        assert result.outcome == "ok"
        entries = {e for e in hostile.active() if e.startswith("inject.example")}
        assert entries
        assert all("\r" not in e and "\n" not in e and " " not in e for e in entries)
        assert hostile.sandbox.smtp.messages == []


class TestBadAnswers:
    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"<html><body>Service temporarily unavailable</body></html>", "text/html"),
            (b'{"meta": {"status": 200}, "data": [{"clickLogs": [', "application/json"),
            (
                b'{"meta": {}, "data": [{"clickLogs": [{"url": "\xff\xfe\xc3("}]}], "fail": []}',
                "application/json",
            ),
            (b'{"meta": {}, "data": {"clickLogs": []}, "fail": []}', "application/json"),
            (b'{"meta": {}, "data": [{"clickLogs": "nope"}], "fail": []}', "application/json"),
            (b'{"meta": {"pagination": {"next": 5}}, "data": [], "fail": []}', "application/json"),
            (b"[1, 2, 3]", "application/json"),
        ],
        ids=[
            "html",
            "truncated",
            "invalid_utf8",
            "data_object",
            "logs_string",
            "bad_token",
            "list",
        ],
    )
    def test_unusable_answer_is_temporary_and_keeps_the_bookmark(
        self, hostile: Hostile, body: bytes, content_type: str
    ) -> None:
        """An HTTP 200 answer that is not usable JSON of the right shape leaves the run
        retrying with upstream_unavailable, the bookmark where it was, and sends nothing."""
        bookmark = _after_clean_run(hostile)
        hostile.add(url_log("https://later.example/x", recent(30)))
        answer = Response(200, body, {"Content-Type": content_type})
        hostile.tamper.answers.extend([answer] * FAST.max_attempts)
        result = hostile.run()
        assert result.outcome == "retrying"
        assert result.error is not None and result.error["code"] == "upstream_unavailable"
        assert "\xff" not in result.error["message"]
        assert hostile.bookmark() == bookmark
        assert "later.example/x" not in hostile.active()
        hostile.tamper.answers.clear()
        assert hostile.run().outcome == "ok"
        assert "later.example/x" in hostile.active()
        assert hostile.sandbox.smtp.messages == []

    def test_oversized_answer_is_refused(self, hostile: Hostile) -> None:
        """An answer above the response size limit is a temporary error, never parsed."""
        bookmark = _after_clean_run(hostile)
        huge = b'{"data": [{"clickLogs": ["' + b"x" * (MAX_RESPONSE_BYTES + 10) + b'"]}]}'
        hostile.tamper.answers.extend([Response(200, huge, {"Content-Type": "application/json"})])
        hostile.tamper.answers.extend(
            [json_response(503, {"fail": [{"code": "busy", "message": "busy"}]})]
            * FAST.max_attempts
        )
        result = hostile.run()
        assert result.outcome == "retrying"
        assert result.error is not None and result.error["kind"] == "temporary"
        assert hostile.bookmark() == bookmark

    def test_huge_page_of_records_is_processed(self, hostile: Hostile) -> None:
        """A page far above the requested size is still processed record by record."""
        records = [
            {**url_log(f"https://h{i}.bulk.example/p", recent()), "date": "bad"}
            for i in range(5000)
        ]
        hostile.tamper.extra_entries = records
        result = hostile.run()
        assert result.outcome == "ok"
        assert result.counters["pulled"] == 5000
        assert len([e for e in hostile.active() if e.endswith("bulk.example/p")]) == 5000


class TestHeaderInjection:
    def test_crlf_in_an_upstream_error_cannot_add_mail_headers(self, hostile: Hostile) -> None:
        """A refusal whose message carries CRLF + Bcc halts with one alert whose headers and
        recipients are exactly the configured ones."""
        fail = {"code": "err_validation\r\nBcc: attacker@evil.example", "message": INJECTION}
        body = {"meta": {"status": 200}, "data": [], "fail": [{"errors": [fail]}]}
        hostile.tamper.answers.append(json_response(200, body))
        result = hostile.run()
        assert result.outcome == "halted"
        assert result.error is not None and result.error["code"] == "mimecast_request"
        assert "\r" not in result.error["message"] and "\n" not in result.error["message"]
        mails = hostile.sandbox.smtp.messages
        assert len(mails) == 1
        mail = mails[0]
        assert set(mail.envelope_to) == {"lab@example.com", "soc@sandbox.example"}
        assert mail.message["Bcc"] is None
        assert mail.message["Subject"] == "[threatshare] hostile halted: mimecast_request"
        header_block = mail.raw.split(b"\r\n\r\n", 1)[0].lower()
        assert b"attacker" not in header_block and b"pwned" not in header_block
