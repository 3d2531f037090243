"""The Mimecast API 2.0 client: malicious URL-log and impersonation-log records, page by page.

Each window is pulled oldest first, following ``meta.pagination.next`` with the same ``from`` and
``to`` on every page (docs/design.md#mimecast); records are streamed one page at a time, so a 30-day
backlog never sits in memory. Real answers end a window with a page of no records that still carries
``next`` (docs/design.md#mimecasts-clock): the token after an empty page is followed once more, and
an empty or error answer to it ends the window as complete; so does a token the server repeats.
Every answer's ``Date`` header is handed to the caller's ``observe`` (Mimecast's clock). Every
request runs under the caller's :class:`~threatshare.http.RetryPolicy` and
:class:`~threatshare.http.Deadline`; a retried page re-sends the same page token.

Answers are classified per docs/design.md#error-policy:

- transport failures → :class:`~threatshare.errors.NetworkError`;
- 429 → :class:`~threatshare.errors.RateLimited`, waiting ``X-RateLimit-Reset`` (milliseconds)
  or ``Retry-After``;
- 5xx, a body that is not JSON, or JSON of the wrong shape →
  :class:`~threatshare.errors.UpstreamUnavailable`;
- HTTP 200 with a non-empty ``fail[]``: temporary when an error says ``retryable``, else
  :class:`~threatshare.errors.RequestRejected` (``mimecast_request``);
- 401 → one fresh token and one more try; a second 401 → ``AuthError`` (``mimecast_auth``);
- 403 → :class:`~threatshare.errors.Forbidden` (``mimecast_forbidden``); any other 4xx →
  ``RequestRejected`` (``mimecast_request``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import structlog

from threatshare.auth import ClientCredentials, Credential
from threatshare.config import MimecastAccount
from threatshare.errors import (
    AuthError,
    Forbidden,
    RateLimited,
    RequestRejected,
    UpstreamUnavailable,
)
from threatshare.http import (
    Deadline,
    RetryPolicy,
    make_client,
    parse_retry_after,
    read_json,
    transport_error,
)
from threatshare.scrub import NO_SECRETS, Scrubber

log = structlog.get_logger(__name__)

URL_LOGS = "/api/ttp/url/get-logs"
IMPERSONATION_LOGS = "/api/ttp/impersonation/get-logs"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"
#: 30 days of one million records at 500 a page is 2,000 pages; far beyond that, the server is
#: looping and the window is given up (the bookmark stays,
#: docs/design.md#the-bookmark-and-the-window).
MAX_PAGES = 50_000
#: Hears the ``Date`` header of each answer and how long the exchange took (seconds).
DateObserver = Callable[[str | None, float], None]
#: The log endpoint and the list of records of each kind of log.
LOGS = {"url": (URL_LOGS, "clickLogs"), "impersonation": (IMPERSONATION_LOGS, "impersonationLogs")}


def format_time(when: datetime) -> str:
    """A Mimecast ``from``/``to`` value in UTC; a naive datetime is taken to be UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(DATE_FORMAT)


def _fail_errors(fail: list[Any]) -> list[tuple[str, str, bool]]:
    """(code, message, retryable) of each error in a ``fail`` array, in either of its shapes:
    ``[{"errors": [{code, message, retryable}]}]`` or the gateway's flat ``[{code, message}]``."""
    found: list[tuple[str, str, bool]] = []
    for item in fail:
        if not isinstance(item, dict):
            continue
        errors = item.get("errors")
        for error in errors if isinstance(errors, list) else [item]:
            if isinstance(error, dict):
                retryable = error.get("retryable") is True
                found.append((str(error.get("code", "")), str(error.get("message", "")), retryable))
    return found


def _describe(errors: list[tuple[str, str, bool]], scrub: Scrubber) -> str:
    parts = [f"{code or 'error'} ({message})" if message else code for code, message, _ in errors]
    return scrub("; ".join(p for p in parts[:3] if p) or "no error detail", 300)


def _body_errors(response: httpx.Response, scrub: Scrubber) -> str:
    """The ``fail[]`` detail of an error answer, when its body has one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    fail = body.get("fail") if isinstance(body, dict) else None
    return _describe(_fail_errors(fail), scrub) if isinstance(fail, list) and fail else ""


def rate_limit_wait(headers: httpx.Headers) -> float | None:
    """Seconds a 429 asks for: ``X-RateLimit-Reset`` (or ``X-Rate-Limit-Reset``) is in
    milliseconds; ``Retry-After`` in seconds or an HTTP date."""
    for name in ("X-RateLimit-Reset", "X-Rate-Limit-Reset"):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                continue
    return parse_retry_after(headers.get("Retry-After"))


def classify(response: httpx.Response, what: str, scrub: Scrubber = NO_SECRETS) -> dict[str, Any]:
    """The JSON body of a successful answer, or the error ``response`` stands for
    (docs/design.md#error-policy). Text quoted from the answer goes through ``scrub``
    (docs/design.md#security: it may echo our credentials)."""
    scrub = scrub.for_answer(response)
    status = response.status_code
    if status == 429:
        raise RateLimited(
            f"{what}: rate limited (HTTP 429)", retry_after=rate_limit_wait(response.headers)
        )
    if status >= 500:
        raise UpstreamUnavailable(f"{what}: HTTP {status}")
    if status == 401:
        detail = _body_errors(response, scrub) or "token refused"
        raise AuthError(f"{what}: HTTP 401 after a fresh token: {detail}", code="mimecast_auth")
    if status == 403:
        detail = _body_errors(response, scrub) or "forbidden"
        raise Forbidden(
            f"{what}: HTTP 403, the API role lacks a permission: {detail}",
            code="mimecast_forbidden",
        )
    if 400 <= status < 500:
        detail = _body_errors(response, scrub)
        message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
        raise RequestRejected(message, code="mimecast_request")
    if not 200 <= status < 300:
        raise UpstreamUnavailable(f"{what}: unexpected HTTP {status}")
    body = read_json(response, what)
    if not isinstance(body, dict):
        raise UpstreamUnavailable(f"{what}: answer is not a JSON object")
    fail = body.get("fail")
    if fail:
        if not isinstance(fail, list):
            raise UpstreamUnavailable(f"{what}: answer has a malformed fail field")
        errors = _fail_errors(fail)
        if any(retryable for _, _, retryable in errors):
            raise UpstreamUnavailable(f"{what}: temporary failure: {_describe(errors, scrub)}")
        raise RequestRejected(
            f"{what}: refused: {_describe(errors, scrub)}", code="mimecast_request"
        )
    return body


@dataclass(frozen=True)
class Page:
    """One page of a log query: its usable records and where the next page starts."""

    records: list[dict[str, Any]]
    malformed: int  # entries of the page that were not JSON objects, left out
    total: int | None  # meta.pagination.totalCount, when the server said
    next_token: str | None


def parse_page(body: dict[str, Any], list_key: str, what: str) -> Page:
    """The records and the next page token of a ``get-logs`` answer; a wrong shape is a
    temporary error (a proxy or a glitch), a record that is not an object is left out."""
    # An answer that only looks empty would end the window early and lose its records: the
    # shape must be exactly "data": [] or "data": [{list_key: [...]}].
    data = body.get("data")
    if not isinstance(data, list) or (data and not isinstance(data[0], dict)):
        raise UpstreamUnavailable(f"{what}: answer has no data list")
    entries = data[0].get(list_key) if data else []
    if not isinstance(entries, list):
        raise UpstreamUnavailable(f"{what}: answer has no {list_key} list")
    records = [entry for entry in entries if isinstance(entry, dict)]
    meta = body.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    pagination = pagination if isinstance(pagination, dict) else {}
    next_token = pagination.get("next")
    if next_token is not None and not isinstance(next_token, str):
        raise UpstreamUnavailable(f"{what}: answer's next page token is not a string")
    total = pagination.get("totalCount")
    return Page(
        records=records,
        malformed=len(entries) - len(records),
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        next_token=next_token or None,
    )


def account_credential(
    account: MimecastAccount,
    transport: httpx.BaseTransport | None = None,
    scrub: Scrubber = NO_SECRETS,
) -> ClientCredentials:
    """The OAuth2 client-credentials token of a Mimecast API 2.0 application; ``transport``
    reaches the token endpoint (tests); ``scrub`` cleans what the endpoint says."""
    return ClientCredentials(
        token_url=account.token_url,
        client_id=account.client_id,
        client_secret=account.client_secret,
        error_code="mimecast_auth",
        what="Mimecast token endpoint",
        auth_method="client_secret_post",
        transport=transport,
        scrub=scrub,
    )


class MimecastClient:
    """Reads one Mimecast API 2.0 account's threat logs within a run's deadline."""

    def __init__(
        self,
        account: MimecastAccount,
        *,
        deadline: Deadline,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008  (a frozen dataclass: shared safely)
        credential: Credential | None = None,
        transport: httpx.BaseTransport | None = None,
        scrub: Scrubber = NO_SECRETS,
        observe: DateObserver | None = None,
    ) -> None:
        self._account = account
        #: Hears every answer's Date header (Mimecast's clock).
        self._observe = observe
        self._scrub = scrub.with_secrets([account.client_secret.get_secret_value()])
        self._deadline = deadline
        self._policy = policy
        self._http = make_client(
            account.base_url, transport=transport, headers={"Content-Type": "application/json"}
        )
        self._own_credential: ClientCredentials | None = None
        if credential is None:
            credential = self._own_credential = account_credential(account, transport, scrub)
        self._credential = credential
        #: Records left out so far because they were not JSON objects (the caller counts them).
        self.malformed_records = 0

    def url_log_pages(self, start: datetime, end: datetime) -> Iterator[list[dict[str, Any]]]:
        """URL Protection click logs with a malicious verdict in [start, end), page by page."""
        filters = {"scanResult": "malicious", "route": "all"}
        return self._pages(URL_LOGS, "clickLogs", filters, start, end)

    def impersonation_log_pages(
        self, start: datetime, end: datetime
    ) -> Iterator[list[dict[str, Any]]]:
        """Impersonation Protection logs tagged malicious in [start, end), page by page."""
        filters = {"taggedMalicious": True}
        return self._pages(IMPERSONATION_LOGS, "impersonationLogs", filters, start, end)

    def probe(self, kind: str = "url") -> None:
        """Ask Mimecast one small question whose answer's ``Date`` header tells its clock
        (``kind``: the log the caller reads, ``"url"`` or ``"impersonation"``, so the API role
        needs no other permission). No ``from``/``to``: Mimecast's own defaults (today) are
        valid whatever the worker's clock says."""
        path, key = LOGS[kind]
        filters = {"scanResult": "malicious"} if kind == "url" else {"taggedMalicious": True}
        self._page(path, key, filters, None, page_size=1)

    def check(self) -> str:
        """Get a token and read one record of each log (the live check); a one-line summary."""
        end = datetime.now(UTC)
        start = end - timedelta(days=1)
        counts = []
        for path, key, filters, label in (
            (URL_LOGS, "clickLogs", {"scanResult": "malicious"}, "malicious URL clicks"),
            (IMPERSONATION_LOGS, "impersonationLogs", {"taggedMalicious": True}, "impersonations"),
        ):
            query = {"from": format_time(start), "to": format_time(end), **filters}
            page = self._page(path, key, query, None, page_size=1)
            counts.append(f"{page.total if page.total is not None else '?'} {label}")
        summary = ", ".join(counts)
        return f"Mimecast {self._account.base_url}: token and log reads ok; last 24h: {summary}"

    def close(self) -> None:
        self._http.close()
        if self._own_credential is not None:
            self._own_credential.close()

    def __enter__(self) -> MimecastClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pages(
        self,
        path: str,
        list_key: str,
        filters: dict[str, Any],
        start: datetime,
        end: datetime,
    ) -> Iterator[list[dict[str, Any]]]:
        query = {"from": format_time(start), "to": format_time(end), "oldestFirst": True, **filters}
        token: str | None = None
        seen: set[str] = set()
        after_empty = False  # the token being followed came with a page of no records
        for number in range(1, MAX_PAGES + 1):
            if after_empty:
                page = self._page_after_empty(path, list_key, query, token)
                if page is None:
                    return
            else:
                page = self._page(path, list_key, query, token, self._account.page_size)
            self.malformed_records += page.malformed
            log.debug(
                "mimecast page",
                call=path,
                page=number,
                records=len(page.records),
                malformed=page.malformed,
                more=page.next_token is not None,
            )
            yield page.records
            if page.next_token is None:
                return
            empty = not page.records and not page.malformed
            if empty and after_empty:
                return  # a second page of nothing: the window is complete
            if page.next_token in seen:
                log.info("mimecast window ends at a repeated page token", call=path, page=number)
                return
            seen.add(page.next_token)
            token, after_empty = page.next_token, empty
        raise UpstreamUnavailable(f"Mimecast {path}: more than {MAX_PAGES} pages in one window")

    def _page_after_empty(
        self, path: str, list_key: str, query: dict[str, Any], token: str | None
    ) -> Page | None:
        """The page of the token an empty page carried (real windows end so), or None when
        its answer is an error: the window is then complete. A network failure or a rate
        limit is no answer, and is retried as any page's."""
        try:
            return self._page(
                path, list_key, query, token, self._account.page_size, final_errors=True
            )
        except (RequestRejected, UpstreamUnavailable) as exc:
            log.info("mimecast window ends after its empty page", call=path, answer=exc.code)
            return None

    def _page(
        self,
        path: str,
        list_key: str,
        query: dict[str, Any],
        token: str | None,
        page_size: int,
        *,
        final_errors: bool = False,
    ) -> Page:
        """One page, retried under the policy; with ``final_errors``, an error answer (5xx,
        ``fail[]``, a wrong shape) is raised at once instead of retried."""
        pagination: dict[str, Any] = {"pageSize": page_size}
        if token is not None:
            pagination["pageToken"] = token
        payload = {"meta": {"pagination": pagination}, "data": [query]}
        what = f"Mimecast {path}"

        def attempt() -> Page:
            try:
                answer = classify(self._post(path, payload, what), what, self._scrub)
                return parse_page(answer, list_key, what)
            except UpstreamUnavailable as exc:
                if final_errors:
                    raise RequestRejected(exc.message, code=exc.code) from None
                raise

        return self._policy.call(self._deadline, what, attempt)

    def _observe_date(self, response: httpx.Response) -> None:
        """Hand the answer's Date to the observer; a 5xx may be a proxy's, with its clock."""
        if self._observe is None or response.status_code >= 500:
            return
        try:
            latency = response.elapsed.total_seconds()
        except RuntimeError:  # not read to the end: no duration known
            latency = 0.0
        self._observe(response.headers.get("Date"), latency)

    def _post(self, path: str, payload: dict[str, Any], what: str) -> httpx.Response:
        """POST with the current token; on 401, once more with a fresh one."""
        for fresh_token in (False, True):
            headers = self._credential.headers()
            try:
                response = self._http.post(path, json=payload, headers=headers)
            except httpx.TransportError as exc:
                raise transport_error(exc, what) from None
            except httpx.DecodingError:
                raise UpstreamUnavailable(f"{what}: answer could not be decoded") from None
            self._observe_date(response)
            if response.status_code != 401:
                self._credential.used()
                return response
            if not fresh_token:
                log.info("mimecast token refused; fetching a fresh one", call=path)
                self._credential.invalidate()
        return response
