"""Making upstream text safe to store, show, log and mail (docs/design.md#security).

Anything an upstream sends is untrusted, its error text included, and it may echo our own
secrets back (a token endpoint quoting the client secret it refused, a 401 quoting the bearer
token). Upstream text enters threatshare's errors through a :class:`Scrubber` only: every
configured secret value is replaced, so is anything that looks like a bearer token, a JWT or a
session cookie, control characters become spaces (no forged status rows, no header or log
injection), and the length is capped. The log processor masks the same token shapes
(:func:`mask_tokens`) in whatever else reaches a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qs, quote, quote_plus, unquote_plus

import httpx2 as httpx

MASK = "**********"
#: The most of one upstream text an error quotes.
MAX_UPSTREAM_TEXT = 300
#: Shorter values are not treated as secrets (they would mask ordinary words).
MIN_SECRET_LENGTH = 6

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# Bearer and Basic values, JWTs (three base64url parts), and JSESSIONID cookie values.
_TOKEN_TEXT = re.compile(
    r"(?i)(bearer\s+|basic\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|(jsessionid=)[^;,\s]+"
)


def mask_tokens(text: str) -> str:
    """``text`` with bearer/Basic values, JWTs and session cookies masked."""
    return _TOKEN_TEXT.sub(lambda m: (m.group(1) or m.group(2) or "") + MASK, text)


def clean_line(text: object, limit: int = 160) -> str:
    """Upstream text fit for one line: control characters become spaces, length bounded."""
    flat = _CONTROL.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# Cc: C0/C1 controls (CR, LF, TAB, ESC…) and Zl/Zp line breaks separate words: they become
# spaces. Cf (bidi overrides, zero-width characters) can make a quoted indicator read as
# something it is not; they, surrogates, private-use and unassigned code points are dropped.
_BREAKS = {"Cc", "Zl", "Zp"}
_INVISIBLE = {"Cf", "Cs", "Co", "Cn"}


def is_unsafe_char(char: str) -> bool:
    """Whether ``char`` is a control, a line break or an invisible format character."""
    category = unicodedata.category(char)
    return category in _BREAKS or category in _INVISIBLE


def clean_text(text: str, limit: int) -> str:
    """Untrusted text made fit for one line of a body: unsafe characters become spaces, runs of
    spaces collapse, and the result is at most ``limit`` characters (an ellipsis marks a cut)."""
    categories = ((c, unicodedata.category(c)) for c in text)
    flat = "".join(" " if cat in _BREAKS else c for c, cat in categories if cat not in _INVISIBLE)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class Scrubber:
    """Removes configured secret values and token-shaped text from upstream text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                # As sent, and as a form body or query string would carry it.
                forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
        # Longest first, so a secret containing another is masked whole.
        self._secrets = tuple(sorted(forms, key=len, reverse=True))

    def with_secrets(self, secrets: Iterable[str]) -> Scrubber:
        """This scrubber with more secret values to remove."""
        combined = Scrubber(secrets)
        combined._secrets = tuple(
            sorted(set(self._secrets) | set(combined._secrets), key=len, reverse=True)
        )
        return combined

    def __call__(self, text: object, limit: int = MAX_UPSTREAM_TEXT) -> str:
        """``text`` without secrets or tokens, on one line, at most ``limit`` characters.

        Secrets are removed before the cut, so a cut cannot leave half a secret behind."""
        flat = _CONTROL.sub(" ", str(text))
        for secret in self._secrets:
            flat = flat.replace(secret, MASK)
        return clean_line(mask_tokens(flat), limit)

    def for_answer(self, response: httpx.Response) -> Scrubber:
        """This scrubber plus the credentials the request of ``response`` carried: an upstream
        can echo what it was sent (a bearer token, a Basic pair, a form's client secret, a
        login's password) even where we do not know the value (a token it issued)."""
        return self.with_secrets(sent_credentials(response.request))


#: A scrubber that knows no configured secret (it still removes what a request carried).
NO_SECRETS = Scrubber()

_CREDENTIAL_FIELDS = ("client_secret", "password", "apiKey", "api_key", "client_assertion")


def sent_credentials(request: httpx.Request) -> list[str]:
    """The secret values a request carries: its Authorization and Cookie values and the
    credential fields of a form or JSON body."""
    found: list[str] = []
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if value:
        found.append(value.strip())
        if scheme.lower() == "basic":
            found.extend(_basic_pair(value))
    for cookie in request.headers.get_list("Cookie"):
        found.extend(part.partition("=")[2] for part in cookie.split(";"))
    found.extend(_body_credentials(request))
    return [value for value in found if value]


def _basic_pair(encoded: str) -> list[str]:
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return []
    _, _, secret = decoded.partition(":")
    return [unquote_plus(secret)] if secret else []


def _body_credentials(request: httpx.Request) -> list[str]:
    try:
        body = request.content
    except httpx.RequestNotRead:
        return []
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("latin-1"))
        return [v for name in _CREDENTIAL_FIELDS for v in form.get(name, [])]
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return []
        if isinstance(data, dict):
            return [str(data[n]) for n in _CREDENTIAL_FIELDS if isinstance(data.get(n), str)]
    return []
