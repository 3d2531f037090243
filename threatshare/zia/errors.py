"""How ZIA answers map onto threatshare's errors (docs/design.md#error-policy, the ZIA rows;
docs/design.md#limits-of-zia).

=========================================  ==========================================
ZIA answer                                 error
=========================================  ==========================================
429                                        RateLimited, ``retry_after`` from the answer
409 EDIT_LOCK_NOT_AVAILABLE (or no code)   EditLocked (temporary)
412, "Org barrier" (409, 412 or 500)       EditLocked (temporary)
other 409 (``DUPLICATE_ITEM``)             ZiaRejected ``zia_request`` (a create finds it)
5xx, a redirect                            UpstreamUnavailable (temporary; normal backoff)
403 STATE_READONLY / x-zscaler-mode        ReadOnly (temporary)
other 403                                  Forbidden ``zia_forbidden``
401 (after the client's re-login dance)    AuthError ``zia_auth``
400 with the quota message                 QuotaExhausted
404 to an ADD/REMOVE of a category         CategoryGone (a signal; raised by the client)
other 4xx                                  ZiaRejected ``zia_request`` (keeps ZIA's code)
=========================================  ==========================================

ZIA's own message is quoted (shortened) in the error so an operator sees the field it names;
headers, tokens and request bodies never are. ``x-ratelimit-reset`` rides on every real answer
(the seconds left in a gateway window, not a retry hint), so it paces 429s only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx2 as httpx

from threatshare.errors import (
    AuthError,
    EditLocked,
    Forbidden,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    ReadOnly,
    RequestRejected,
    Signal,
    UpstreamUnavailable,
)
from threatshare.http import parse_retry_after
from threatshare.scrub import NO_SECRETS, Scrubber

_BARRIER = re.compile(r"org barrier|resource access blocked", re.IGNORECASE)
_QUOTA = re.compile(r"maximum of \d+ custom urls", re.IGNORECASE)
# UNCONFIRMED: ZIA's wording when it refuses a category with neither URLs nor keywords. Its
# documentation only says one of them is required; any 400 naming them is read as that.
_NEEDS_ENTRIES = re.compile(r"\b(urls?|keywords?)\b", re.IGNORECASE)
MAX_DETAIL = 200
# ZIA's message is kept whole (bounded) for finding the entry it names; errors quote less.
MAX_MESSAGE = 4096


class ZiaRejected(RequestRejected):
    """ZIA refused a request (a 4xx no other error covers); ``zia_code`` and ``detail`` are
    ZIA's own ``code`` and ``message``, ``status`` the HTTP status."""

    def __init__(self, message: str, *, status: int, zia_code: str, detail: str) -> None:
        super().__init__(message, code="zia_request")
        self.status = status
        self.zia_code = zia_code
        self.detail = detail


class ActivationRefused(PermanentError):
    """ZIA refused ``POST /status/activate`` for good (403, or 401 after a fresh token): the
    tenant's staged changes protect nobody, so every instance of the tenant halts
    (docs/design.md#activation)."""

    default_code = "activation_refused"


class CategoryGone(Signal):
    """The category's id no longer exists in ZIA (an admin deleted it). Forget the stored id:
    the next :meth:`~threatshare.zia.client.ZiaClient.find_or_create_category` without it finds or
    creates the category again. A signal: nothing halts, nothing retries it."""

    default_code = "zia_category_gone"

    def __init__(self, message: str, *, category_id: str) -> None:
        super().__init__(message)
        self.category_id = category_id


class EmptyCategoryRefused(Signal):
    """The tenant will not create a category without a first entry (ZIA's documentation asks
    for ``urls`` or ``keywords``). Not a failure: the category is created, holding its first
    batch, by the first run that has entries to push (docs/design.md#pushing-to-zia)."""

    default_code = "zia_category_needs_entries"

    def __init__(self, name: str) -> None:
        super().__init__(f"ZIA creates category {name!r} only with a first entry")


def refuses_empty(exc: ZiaRejected) -> bool:
    """Whether a refused ``POST /urlCategories`` without entries asked for a first entry (and
    not, say, for a valid name)."""
    return exc.status == 400 and bool(_NEEDS_ENTRIES.search(exc.detail))


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def retry_after(response: httpx.Response, body: dict[str, Any] | None = None) -> float | None:
    """Seconds a 429 asks us to wait: the ``Retry-After`` header (``1``, ``"1 seconds"``,
    ``"10s"``), else the body's ``"Retry-After"``, else ``x-ratelimit-reset`` (the end of the
    gateway's window, which is what a 429 without a hint waits for)."""
    body = _body(response) if body is None else body
    for value in (
        response.headers.get("Retry-After"),
        body.get("Retry-After"),
        response.headers.get("x-ratelimit-reset"),
    ):
        seconds = parse_retry_after(value)
        if seconds is not None:
            return seconds
    return None


def is_read_only(response: httpx.Response, zia_code: str) -> bool:
    mode = response.headers.get("x-zscaler-mode", "")
    return zia_code == "STATE_READONLY" or mode.lower() == "read-only"


def raise_for_status(response: httpx.Response, what: str, scrub: Scrubber = NO_SECRETS) -> None:
    """Raise the error an answer means (see the module's table); return on 2xx. ZIA's code and
    message go through ``scrub`` (control characters, echoed credentials) before any error
    quotes them."""
    status = response.status_code
    if 200 <= status < 300:
        return
    body = _body(response)
    clean = scrub.for_answer(response)
    zia_code = clean(_text(body, "code"), 80)
    # The OneAPI gateway says ``{"detail": "unauthorized"}`` where ZIA says ``message``.
    detail = clean(_text(body, "message") or _text(body, "detail"), MAX_MESSAGE)
    said = " ".join(part for part in (zia_code, detail[:MAX_DETAIL]) if part)
    summary = f"{what}: HTTP {status}" + (f" {said}" if said else "")
    if status == 429:
        raise RateLimited(summary, retry_after=retry_after(response, body))
    if _BARRIER.search(detail) or status == 412:
        raise EditLocked(summary)
    if status == 409 and zia_code in ("", "EDIT_LOCK_NOT_AVAILABLE"):
        raise EditLocked(summary)
    if status >= 500 or status < 400:
        # Only an explicit Retry-After is a hint here; x-ratelimit-reset is on every answer.
        hint = parse_retry_after(response.headers.get("Retry-After"))
        raise UpstreamUnavailable(summary, retry_after=hint)
    if status == 403:
        if is_read_only(response, zia_code):
            raise ReadOnly(summary)
        raise Forbidden(summary, code="zia_forbidden")
    if status == 401:
        raise AuthError(summary, code="zia_auth")
    if status == 400 and _QUOTA.search(detail):
        raise QuotaExhausted(f"{what}: ZIA's custom-URL quota is used up ({detail[:MAX_DETAIL]})")
    raise ZiaRejected(summary, status=status, zia_code=zia_code, detail=detail)


def refuses_an_entry(exc: ZiaRejected, entries: Sequence[str]) -> bool:
    """True when a 400 to an ADD/REMOVE refused the batch because of some entry in it, so
    bisecting can find it; a malformed body or any other refusal is not bisected."""
    if exc.status != 400:
        return False
    return exc.zia_code == "INVALID_INPUT_ARGUMENT" or named_entry(exc, entries) is not None


def named_entry(exc: ZiaRejected, entries: Sequence[str]) -> str | None:
    """The entry of ``entries`` that ZIA's message names, if any (the longest match wins, so
    ``a.example`` does not shadow ``evil-a.example``)."""
    detail = exc.detail.lower()
    if not detail:
        return None
    found = [e for e in entries if e and e.lower() in detail]
    if not found:
        return None
    return max(found, key=len)
