"""Alert e-mails: what they say, what they never say, and that nothing reaches a header."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.alerts.compose import compose
from threatshare.alerts.message import (
    MAX_INDICATORS,
    MAX_MESSAGE,
    Alert,
    clean_text,
    defang,
    recipients_for,
)
from threatshare.config import Config
from threatshare.errors import REMEDIES

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
SENDER = "threatshare@example.com"
HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
}


def _alert(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "kind": "halted",
        "instance": "impersonation",
        "category": "Mimecast Impersonation Domains",
        "zia_tenant": "prod",
        "mimecast_account": "main",
        "code": "zia_auth",
        "message": "token endpoint answered 401 invalid_client",
        "since": NOW - timedelta(hours=3),
        "bookmark": NOW - timedelta(hours=4),
        "recipients": ("secops@example.com", "soc@example.com"),
    }
    values.update(changes)
    return Alert(**values)


def _wire(message: EmailMessage) -> EmailMessage:
    """The message as a receiving server parses it from the bytes we would send."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _body(alert: Alert) -> str:
    text = _wire(compose(alert, SENDER, now=NOW)).get_content()
    assert isinstance(text, str)
    return " ".join(text.split())  # compare across line wrapping


class TestHalted:
    def test_subject_names_instance_and_code(self) -> None:
        """The subject is `[threatshare] <instance> halted: <code>`."""
        message = _wire(compose(_alert(), SENDER, now=NOW))
        assert message["Subject"] == "[threatshare] impersonation halted: zia_auth"
        assert message["From"] == SENDER
        assert message["To"] == "secops@example.com, soc@example.com"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message.get_content_type() == "text/plain"

    def test_body_states_every_fact_an_operator_needs(self) -> None:
        """The body names instance, category, tenant, account, code, message and since when."""
        body = _body(_alert())
        for fact in (
            "Instance: impersonation",
            "Category: Mimecast Impersonation Domains",
            "ZIA tenant: prod",
            "Mimecast account: main",
            "Error code: zia_auth",
            "Error: token endpoint answered 401 invalid_client",
            "Halted since: 2024-05-10 09:00:00 UTC (3h ago)",
        ):
            assert fact in body

    def test_body_explains_the_bookmark_and_the_30_day_limit(self) -> None:
        """The bookmark, what recovery shares, and when its records start to expire are given."""
        body = _body(_alert())
        assert "Bookmark: 2024-05-10 08:00:00 UTC" in body
        assert "threats Mimecast recorded since the bookmark are shared" in body
        assert "records older than 30 days before now are gone" in body
        assert "start to disappear at 2024-06-09 08:00:00 UTC" in body

    def test_expired_bookmark_says_what_is_lost(self) -> None:
        """A bookmark older than 30 days makes the mail say which span can no longer be shared."""
        body = _body(_alert(bookmark=NOW - timedelta(days=40)))
        assert "passed that limit at 2024-04-30 12:00:00 UTC" in body
        assert "records from 2024-03-31 12:00:00 UTC to 2024-04-10 12:00:00 UTC" in body
        assert "start to disappear" not in body

    def test_missing_bookmark_is_explained(self) -> None:
        """An instance that never completed a run says so instead of quoting a bookmark."""
        body = _body(_alert(bookmark=None))
        assert "Bookmark: none yet" in body
        assert "older than 30 days before now are gone" in body

    @pytest.mark.parametrize("code", sorted(REMEDIES))
    def test_remedy_for_the_code_and_resume_command(self, code: str) -> None:
        """Each permanent code's remedy is quoted, followed by `threatshare resume <name>`."""
        body = _body(_alert(code=code))
        assert " ".join(REMEDIES[code].split()) in body
        assert body.rstrip().endswith("threatshare resume impersonation")

    def test_unknown_code_gets_a_generic_remedy(self) -> None:
        """A code without a remedy still tells the operator what to do."""
        body = _body(_alert(code="something_new"))
        assert "fix its cause, then resume" in body
        assert "threatshare resume impersonation" in body


class TestRecovered:
    def test_subject_and_how_long_it_was_halted(self) -> None:
        """The recovery mail's subject says recovered; its body when, and for how long."""
        alert = _alert(kind="recovered", since=NOW - timedelta(days=1, hours=2), at=NOW)
        message = _wire(compose(alert, SENDER, now=NOW + timedelta(minutes=5)))
        assert message["Subject"] == "[threatshare] impersonation recovered"
        body = " ".join(str(message.get_content()).split())
        assert "Recovered at: 2024-05-10 12:00:00 UTC" in body
        assert "Halted for: 1d 2h" in body
        assert "It had halted on: zia_auth" in body
        assert "resume" not in body


class TestUntrustedText:
    INJECTION = "bad entry\r\nBcc: victim@evil.example\r\n\r\nfake body"

    def test_message_cannot_inject_a_header(self) -> None:
        """CR/LF in an upstream message cannot add a Bcc (or any) header to the mail."""
        message = _wire(compose(_alert(message=self.INJECTION), SENDER, now=NOW))
        assert set(message.keys()) == HEADERS
        assert message["Bcc"] is None
        assert b"\nBcc:" not in compose(_alert(message=self.INJECTION), SENDER).as_bytes()
        assert "Error: bad entry Bcc: victim@evil[.]example fake body" in _body(
            _alert(message=self.INJECTION)
        )

    def test_indicators_cannot_inject_a_header_and_are_defanged(self) -> None:
        """Indicators with CR/LF and escapes are flattened, defanged, and stay in the body."""
        alert = _alert(
            indicators=("http://evil.example/login\r\nBcc: x@evil.example", "\x1b[2Jwipe.example")
        )
        message = _wire(compose(alert, SENDER, now=NOW))
        assert set(message.keys()) == HEADERS
        body = str(message.get_content())
        assert "hxxp://evil[.]example/login Bcc: x@evil[.]example" in body
        assert "[2Jwipe[.]example" in body
        assert "\x1b" not in body
        assert "http://" not in body

    def test_non_ascii_text_travels_as_seven_bit(self) -> None:
        """International text is encoded for a 7-bit transport and reads back unchanged."""
        alert = _alert(message="bücher.example — blocked", indicators=("faß.de",))
        message = compose(alert, SENDER, now=NOW)
        assert message.as_bytes().isascii()
        assert message["Content-Transfer-Encoding"] == "quoted-printable"
        body = str(_wire(message).get_content())
        assert "bücher[.]example — blocked" in body
        assert "faß[.]de" in body

    def test_bidi_and_zero_width_characters_are_removed(self) -> None:
        """Invisible format characters are dropped so an indicator reads as what it is."""
        assert clean_text("evil\u202e\u200b.example", 100) == "evil.example"

    def test_untrusted_text_is_capped(self) -> None:
        """A huge message and many indicators are cut to bounded sizes when the alert is made."""
        alert = _alert(message="x" * 50_000, indicators=tuple(f"e{i}.example" for i in range(99)))
        assert alert.message is not None and len(alert.message) == MAX_MESSAGE
        assert alert.message.endswith("…")
        assert len(alert.indicators) == MAX_INDICATORS

    def test_code_is_reduced_to_a_token(self) -> None:
        """A code with odd characters cannot break the subject line."""
        alert = _alert(code="zia_auth\r\nBcc: x@evil.example")
        message = _wire(compose(alert, SENDER, now=NOW))
        assert (
            message["Subject"]
            == "[threatshare] impersonation halted: zia_auth__bcc__x_evil_example"
        )
        assert set(message.keys()) == HEADERS

    @settings(max_examples=60, deadline=None)
    @given(message=st.text(max_size=300), indicators=st.lists(st.text(max_size=80), max_size=5))
    def test_no_text_whatsoever_reaches_a_header(self, message: str, indicators: list[str]) -> None:
        """Whatever the upstream text, the parsed mail has exactly our headers, each one line."""
        alert = _alert(message=message, indicators=tuple(indicators))
        parsed = _wire(compose(alert, SENDER, now=NOW))
        assert set(parsed.keys()) == HEADERS
        for value in parsed.values():
            assert "\r" not in value and "\n" not in value


class TestValidation:
    @pytest.mark.parametrize(
        "changes",
        [
            {"instance": "prod\r\nBcc: x@evil.example"},
            {"instance": "prod\n"},
            {"zia_tenant": "Prod"},
            {"mimecast_account": ""},
            {"category": "cat\nx"},
            {"recipients": ("soc@example.com\r\nBcc: x@evil.example",)},
            {"recipients": ("not an address",)},
            {"recipients": ("soc@example.com\n",)},
            {"kind": "exploded"},
        ],
    )
    def test_invalid_alert_is_refused(self, changes: dict[str, Any]) -> None:
        """Names, category, recipients and kind are validated when the alert is made."""
        with pytest.raises(ValueError):
            _alert(**changes)

    def test_invalid_sender_is_refused(self) -> None:
        """compose() refuses a sender that is not a plain address."""
        with pytest.raises(ValueError):
            compose(_alert(), "threatshare@example.com\r\nBcc: x@evil.example")
        with pytest.raises(ValueError):
            compose(_alert(), "threatshare@example.com\n")

    def test_alert_without_recipients_cannot_be_composed(self) -> None:
        """An e-mail needs someone to go to."""
        with pytest.raises(ValueError):
            compose(_alert(recipients=()), SENDER)

    def test_recipients_are_deduplicated_ignoring_case(self) -> None:
        """The same address twice, in any case, is written once."""
        alert = _alert(recipients=("soc@example.com", "SOC@example.com", "a@example.com"))
        assert alert.recipients == ("soc@example.com", "a@example.com")

    def test_recipients_for_joins_notify_and_admins(self) -> None:
        """An instance's people are its notify list then the admins, each once."""
        config = Config.model_validate(
            {
                "settings": {"admins": ["soc@example.com", "secops@example.com"]},
                "mimecast": {"main": {"client_id": "id", "client_secret": "s"}},
                "zia": {"prod": {"cloud": "zscloud.net", "api_key": "k"}},
                "instances": {
                    "imp": {
                        "mimecast": "main",
                        "zia": "prod",
                        "category": "Cat",
                        "sources": ["malicious_domains"],
                        "notify": ["secops@example.com", "team@example.com"],
                    }
                },
            }
        )
        assert recipients_for(config, "imp") == (
            "secops@example.com",
            "team@example.com",
            "soc@example.com",
        )

    def test_round_trip_through_json_data(self) -> None:
        """to_dict/from_dict give the same alert back, times in UTC."""
        alert = _alert(indicators=("evil.example",), at=NOW)
        assert Alert.from_dict(alert.to_dict()) == alert

    def test_naive_times_are_taken_as_utc(self) -> None:
        """A naive datetime is read as UTC rather than as local time."""
        alert = _alert(since=datetime(2024, 5, 10, 9, 0))
        assert alert.since == datetime(2024, 5, 10, 9, 0, tzinfo=UTC)


class TestDefang:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("http://evil.example/a.php?x=1", "hxxp://evil[.]example/a[.]php?x=1"),
            ("HTTPS://Evil.Example.COM/", "hxxps://Evil[.]Example[.]COM/"),
            ("evil.example.com/login", "evil[.]example[.]com/login"),
            (".evil.example", ".evil[.]example"),
            ("203.0.113.9:8080", "203[.]0[.]113[.]9:8080"),
            ("xn--bcher-kva.example", "xn--bcher-kva[.]example"),
            ("The key is revoked. Update it.", "The key is revoked. Update it."),
        ],
    )
    def test_examples(self, text: str, expected: str) -> None:
        """Schemes become hxxp(s) and dots inside names become [.]; sentence ends stay."""
        assert defang(text) == expected

    @given(st.text(max_size=200))
    def test_idempotent(self, text: str) -> None:
        """Defanging twice changes nothing more."""
        assert defang(defang(text)) == defang(text)

    @given(
        st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=2),
        st.sampled_from(["http://", "https://", ""]),
    )
    def test_no_clickable_host_survives(self, labels: list[str], scheme: str) -> None:
        """A defanged URL has no scheme a client links and no dot between labels."""
        out = defang(f"{scheme}{'.'.join(labels)}/path")
        assert not re.search(r"(?i)https?://", out)
        assert not re.search(r"[a-z0-9-]\.[a-z0-9-]", out)


def _quota_warning(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "kind": "quota_warning",
        "instance": "urls",
        "category": "Mimecast Malicious URLs",
        "zia_tenant": "prod",
        "mimecast_account": "main",
        "code": None,
        "message": None,
        "since": None,
        "bookmark": None,
        "recipients": ("soc@example.com",),
        "figures": {
            "used": 20_500,
            "quota": 25_000,
            "percent": 82,
            "warn_at": 80,
            "reserve": 1250,
            "rate_per_day": 1000,
        },
        "shares": (("Mimecast Malicious URLs", 12_000), ("Admin Blocks", 8_500)),
        "forecast": NOW + timedelta(days=4, hours=12),
    }
    values.update(changes)
    return Alert(**values)


class TestLifecycleWarnings:
    def test_quota_warning_gives_each_share_and_a_forecast(self) -> None:
        """The quota warning names the tenant and percent in its subject and gives each
        category's share, the reserve, the rate and when the quota fills."""
        alert = _quota_warning()
        assert alert.subject == "[threatshare] ZIA tenant prod: custom URL quota 82% used"
        body = _body(alert)
        assert "has 20,500 of its 25,000 custom URLs in use (82%)" in body
        assert "warning level of 80%" in body
        assert "Mimecast Malicious URLs 12,000 (48%)" in body
        assert "Admin Blocks 8,500 (34%)" in body
        assert "never takes the last 1,250 (quota_reserve)" in body
        assert "+1,000 a day" in body
        assert "fills around 2024-05-15 00:00:00 UTC (in 4d 12h)" in body
        assert "falls below 75%" in body

    def test_quota_warning_without_growth_forecasts_nothing(self) -> None:
        """Without growth the warning says no fill date can be forecast."""
        body = _body(_quota_warning(forecast=None))
        assert "no date is forecast" in body and "fills around" not in body

    def test_category_names_from_zia_are_cleaned(self) -> None:
        """A share's name (typed by an admin, read from ZIA) loses control characters and
        cannot reach a header."""
        alert = _quota_warning(shares=(("Evil\r\nBcc: x@example.com\u202e", 3),))
        message = _wire(compose(alert, SENDER, now=NOW))
        assert message["Bcc"] is None
        assert "Evil Bcc: x@example.com 3" in _body(alert)

    def test_at_capacity_gives_the_count_and_what_to_change(self) -> None:
        """The capacity e-mail says how many threats were left out, the capacity and what to
        change, naming the instance's and tenant's tables."""
        alert = _quota_warning(
            kind="at_capacity",
            figures={
                "left_out": 2000,
                "capacity": 1000,
                "entries": 1000,
                "evicted": 900,
                "reserve": 50,
                "max_entries": 0,
            },
            shares=(),
            forecast=None,
        )
        assert alert.subject == "[threatshare] urls at capacity"
        body = _body(alert)
        assert "could not share 2,000 new threats" in body
        assert "Capacity: 1,000 entries" in body
        assert "Evicted: 900 of its own least recently seen" in body
        assert "raise max_entries of [instances.urls]" in body
        assert "lower quota_reserve of [zia.prod]" in body
        assert "the newest threats win" in body

    def test_lifecycle_alerts_round_trip_through_json_data(self) -> None:
        """Figures, shares and the forecast survive the outbox's JSON."""
        alert = _quota_warning()
        assert Alert.from_dict(alert.to_dict()) == alert
