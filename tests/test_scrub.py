"""The one scrubber of upstream text (docs/design.md#security) and the errors built from ZIA's
words."""

from __future__ import annotations

import base64

import httpx2 as httpx
import pytest
from pydantic import SecretStr

from threatshare.config import Config, Settings, Smtp
from threatshare.errors import ThreatshareError
from threatshare.scrub import MASK, MAX_UPSTREAM_TEXT, Scrubber
from threatshare.zia.errors import raise_for_status

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMifQ.c2lnbmF0dXJlLXZhbHVl"


def answer(status: int, body: object, request: httpx.Request | None = None) -> httpx.Response:
    request = request or httpx.Request("GET", "https://zia.example/api/v1/urlCategories")
    return httpx.Response(status, json=body, request=request)


class TestScrubber:
    def test_configured_secrets_and_their_encodings_are_masked(self) -> None:
        """A configured secret is masked as sent and as a form would encode it."""
        scrub = Scrubber(["Sec ret+/1"])
        text = scrub("got Sec ret+/1, Sec+ret%2B%2F1 and Sec%20ret%2B%2F1")
        assert "Sec" not in text and text.count(MASK) == 3

    def test_tokens_and_control_characters_go_and_length_is_capped(self) -> None:
        """JWTs and bearer values are masked, control characters become spaces, and the text is
        cut at the cap (after masking, so no half secret survives)."""
        scrub = Scrubber()
        text = scrub(f"bad {JWT} Bearer abc.def\x1b[2J\r\nFORGED" + "x" * 1000)
        assert JWT not in text and "abc.def" not in text
        assert "\x1b" not in text and "\r" not in text and "\n" not in text
        assert len(text) <= MAX_UPSTREAM_TEXT

    def test_what_a_request_carried_is_masked_in_its_answer(self) -> None:
        """The credentials of the request (a Basic pair, a form's client secret, an opaque
        bearer token) are masked in text from its answer, though nobody configured them."""
        basic = base64.b64encode(b"id:Basic-Secret-9").decode()
        request = httpx.Request(
            "POST",
            "https://idp.example/token",
            data={"client_secret": "Form-Secret-8"},
            headers={"Authorization": f"Basic {basic}"},
        )
        scrub = Scrubber().for_answer(httpx.Response(400, request=request))
        text = scrub(f"refused Basic-Secret-9 and Form-Secret-8 ({basic})")
        assert "Secret" not in text and basic not in text

    def test_every_secret_of_the_configuration_is_known(self) -> None:
        """Config.secret_values holds every secret, a Redis URL's password on its own too."""
        config = Config(
            settings=Settings(redis_url=SecretStr("redis://:Redis-Pass-1@h:6379/0")),
            smtp=Smtp(host="smtp.example", sender="a@example.com", password=SecretStr("Smtp-2")),
        )
        values = config.secret_values()
        assert "Redis-Pass-1" in values and "Smtp-2" in values


class TestZiaMessages:
    def test_control_characters_in_zia_messages_are_removed(self) -> None:
        """ESC, BEL, CR and LF in ZIA's message never reach the error a status row shows."""
        body = {"code": "INVALID\x07", "message": "bad\x1b[31m entry\r\nurls  ok  0\x07"}
        with pytest.raises(ThreatshareError) as refused:
            raise_for_status(answer(400, body), "ZIA PUT")
        text = refused.value.message
        assert not any(c in text for c in "\x1b\x07\r\n"), repr(text)
        assert "bad" in text and "entry" in text

    def test_a_zia_401_echoing_the_token_does_not_quote_it(self) -> None:
        """A ZIA 401 that quotes the opaque token the request carried does not pass it on."""
        request = httpx.Request(
            "GET", "https://zia.example/api/v1/x", headers={"Authorization": "Bearer opaque-T0k3n"}
        )
        body = {"code": "UNAUTHORIZED", "message": "token opaque-T0k3n is invalid"}
        with pytest.raises(ThreatshareError) as refused:
            raise_for_status(answer(401, body, request), "ZIA GET")
        assert "opaque-T0k3n" not in refused.value.message
        assert "UNAUTHORIZED" in refused.value.message
