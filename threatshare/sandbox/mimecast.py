"""An emulator of the Mimecast API 2.0 endpoints threatshare reads, for tests and the demo.

Serve it with :class:`~threatshare.sandbox.server.EmulatorServer`::

    mimecast = MimecastEmulator()
    mimecast.add_url_logs([url_log("https://evil.example/login", "2024-11-14T19:44:02+0000")])
    with EmulatorServer(mimecast) as server:
        account = mimecast.account(server.url)

Endpoints: ``POST /oauth/token`` (client credentials in the form body), ``POST
/api/ttp/url/get-logs`` and ``POST /api/ttp/impersonation/get-logs``, with the filters, ordering,
pagination and error envelopes described in Mimecast's API documentation; the records and
their paging live in :mod:`threatshare.sandbox.mimecast_logs`.

Every answer carries a ``Date`` header from the emulator's own ``clock`` (a callable returning
an aware datetime; the wall clock by default), which is also the default ``to`` of a query: a
test sets it apart from the product's clock. Windows end as the real API's do, with an empty
page that still carries ``next`` (:mod:`threatshare.sandbox.mimecast_logs`).

Knobs, all safe to turn from another thread while the server runs:

- ``clock``: Mimecast's time;
- ``past_end``: what the token of a window's trailing empty page gives (``"empty"``, the
  default: another empty page; ``"error"``: a ``fail[]``; ``"repeat"``: the same token again);
  ``trailing_empty_page = False`` serves the documented ending instead (no ``next`` on the last
  page);
- ``latency``: seconds slept before answering each call;
- ``fail_next(endpoint, kind, count)``: script the next answers of ``"token"``, ``"url"`` or
  ``"impersonation"``; ``kind`` is one of :data:`FAULTS`;
- ``temporary_failure_rate`` (0..1): that fraction of calls gets a random temporary failure
  (seeded by ``seed``, so a run is reproducible);
- ``rate_limit_reset_ms``: the ``X-RateLimit-Reset`` of a 429 that was not given one;
- ``expire_tokens()``, ``rotate_secret(new)``, ``revoke()``: token and credential life cycle;
- ``calls`` / ``calls_to(endpoint)``: every call as a :class:`Call` (path, status, arrival
  time, the query ``data[0]``, the page token, the fault served); ``tokens_issued`` counts tokens.

For the one-million-record backlog benchmark, :meth:`MimecastEmulator.set_url_log_generator`
serves URL logs computed from their index instead of stored ones.
"""

from __future__ import annotations

import email.utils
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import SecretStr

from threatshare.config import MimecastAccount
from threatshare.sandbox.mimecast_logs import (
    MAX_PAGE_SIZE,
    LogBook,
    MakeRecord,
    PastEnd,
    QueryRejected,
    format_date,
    generated_url_log,
    impersonation_log,
    page_size,
    parse_date,
    recorded_free_mail_impersonation,
    recorded_policy_verdict_log,
    url_log,
)
from threatshare.sandbox.server import Request, Response, json_response, sleep_latency

__all__ = [
    "FAULTS",
    "Call",
    "MimecastEmulator",
    "format_date",
    "impersonation_log",
    "parse_date",
    "recorded_free_mail_impersonation",
    "recorded_policy_verdict_log",
    "url_log",
]

TOKEN_PATH = "/oauth/token"
LOG_PATHS = {"/api/ttp/url/get-logs": "url", "/api/ttp/impersonation/get-logs": "impersonation"}
LOG_KEYS = {"url": "clickLogs", "impersonation": "impersonationLogs"}
# The call log is trimmed so a long demo does not grow without bound.
MAX_CALLS = 100_000

Endpoint = Literal["token", "url", "impersonation"]
Fault = Literal[
    "429",  # rate limited, X-RateLimit-Reset in milliseconds
    "429_bare",  # the real answer: "Over throttling limit (10000/hour)", no X-RateLimit-* headers
    "500",
    "502",
    "503",
    "proxy",  # a proxy's HTML error page (HTTP 502, not JSON)
    "fail_retryable",  # HTTP 200 with fail[].errors[].retryable true
    "fail_permanent",  # HTTP 200 with fail[].errors[].retryable false
    "bad_shape",  # HTTP 200 JSON whose data has the wrong type
    "400",
    "401",
    "403",
    "404",
    "418",
    "drop",  # the connection closes halfway through the answer
]
FAULTS: tuple[str, ...] = get_args(Fault)
TEMPORARY_FAULTS: tuple[Fault, ...] = (
    "429",
    "500",
    "502",
    "503",
    "proxy",
    "fail_retryable",
    "drop",
)


@dataclass(frozen=True)
class Call:
    """One call the emulator answered: what tests assert on (never a secret)."""

    method: str
    path: str
    status: int
    at: float  # time.monotonic() on arrival
    query: dict[str, Any] | None = None  # the request's data[0]
    page_token: str | None = None
    page_size: Any = None
    records: int = 0
    fault: str | None = None


def _fail_body(code: str, message: str, retryable: bool, status: int = 200) -> dict[str, Any]:
    errors = [{"code": code, "message": message, "retryable": retryable}]
    return {"meta": {"status": status}, "data": [], "fail": [{"key": {}, "errors": errors}]}


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _gateway_fail(status: int, code: str, message: str) -> Response:
    return json_response(status, {"fail": [{"code": code, "message": message}]})


class MimecastEmulator:
    """A Mimecast API 2.0 tenant in memory; an app for ``EmulatorServer``."""

    def __init__(
        self,
        *,
        client_id: str = "mimecast-sandbox-client",
        client_secret: str = "mimecast-sandbox-secret",
        token_lifetime: float = 1800.0,
        latency: float = 0.0,
        temporary_failure_rate: float = 0.0,
        rate_limit_reset_ms: int = 1000,
        seed: int = 0,
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self.client_id = client_id
        #: Mimecast's time: every answer's Date header, and a query's default ``to``.
        self.clock = clock
        #: What the token of a window's trailing empty page gives (see the module's note).
        self.past_end: PastEnd = "empty"
        #: Windows end with an empty page that still carries ``next``, as the real API's do.
        self.trailing_empty_page = True
        self._secret = client_secret
        self.token_lifetime = token_lifetime
        self.latency = latency
        self.temporary_failure_rate = temporary_failure_rate
        self.rate_limit_reset_ms = rate_limit_reset_ms
        self.calls: list[Call] = []
        #: Tokens issued so far (tests count refreshes).
        self.tokens_issued = 0
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._revoked = False
        self._faults: dict[str, deque[tuple[Fault, int | None]]] = {
            name: deque() for name in get_args(Endpoint)
        }
        self._book = LogBook()

    # -- seeding ---------------------------------------------------------------------------

    def add_url_logs(
        self, records: Iterable[dict[str, Any]], *, stamped: datetime | None = None
    ) -> None:
        """Store URL click logs (see :func:`url_log`); each needs a ``date``. ``stamped``:
        the time queries find them at, when not their ``date`` (a record dated oddly)."""
        self._add("url", records, stamped)

    def add_impersonation_logs(
        self, records: Iterable[dict[str, Any]], *, stamped: datetime | None = None
    ) -> None:
        """Store impersonation logs (see :func:`impersonation_log`); each needs an
        ``eventTime``. ``stamped`` as for :meth:`add_url_logs`."""
        self._add("impersonation", records, stamped)

    def _add(
        self, endpoint: str, records: Iterable[dict[str, Any]], stamped: datetime | None
    ) -> None:
        with self._lock:
            self._book.add(endpoint, records, None if stamped is None else stamped.timestamp())

    def set_url_log_generator(
        self, count: int, start: datetime, end: datetime, make: MakeRecord = generated_url_log
    ) -> None:
        """Serve ``count`` URL logs spread evenly over [start, end), built by
        ``make(index, date)``, instead of stored ones: the backlog is never held in memory.
        ``totalCount`` takes every generated record to match the query's filters."""
        with self._lock:
            self._book.generate("url", count, start, end, make)

    def account(self, base_url: str, page_size: int = MAX_PAGE_SIZE) -> MimecastAccount:
        """A configuration table for this tenant served at ``base_url``."""
        return MimecastAccount(
            base_url=base_url,
            client_id=self.client_id,
            client_secret=SecretStr(self._secret),
            page_size=page_size,
        )

    # -- knobs -----------------------------------------------------------------------------

    def fail_next(
        self, endpoint: Endpoint, kind: Fault, count: int = 1, *, reset_ms: int | None = None
    ) -> None:
        """Answer the next ``count`` calls to ``endpoint`` with the fault ``kind``. A 429 says
        ``X-RateLimit-Reset: reset_ms`` (default ``rate_limit_reset_ms``)."""
        if endpoint not in self._faults or kind not in FAULTS:
            raise ValueError(f"unknown endpoint {endpoint!r} or fault {kind!r}")
        with self._lock:
            self._faults[endpoint].extend([(kind, reset_ms)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            for script in self._faults.values():
                script.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (401 ``token_expired``)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def rotate_secret(self, new_secret: str) -> None:
        """The keys were regenerated: only ``new_secret`` gets tokens, and tokens issued so far
        stop working. Also lifts a :meth:`revoke`."""
        with self._lock:
            self._secret = new_secret
            self._revoked = False
        self.expire_tokens()

    def revoke(self) -> None:
        """The API application was revoked: no token works and none is issued."""
        with self._lock:
            self._revoked = True
            self._tokens.clear()

    def calls_to(self, endpoint: Endpoint) -> list[Call]:
        """The calls made so far to one endpoint, oldest first."""
        path = TOKEN_PATH if endpoint == "token" else f"/api/ttp/{endpoint}/get-logs"
        with self._lock:
            return [call for call in self.calls if call.path == path]

    # -- serving ---------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        arrived = time.monotonic()
        sleep_latency(self.latency)
        parsed = self._parse(request) if request.path in LOG_PATHS else None
        query, token, size = parsed or (None, None, None)
        with self._lock:
            endpoint = "token" if request.path == TOKEN_PATH else LOG_PATHS.get(request.path)
            fault = self._next_fault(endpoint) if endpoint else None
            records = 0
            if fault is not None:
                response = self._fault(fault[0], fault[1], endpoint == "token")
            elif request.method != "POST":
                response = _gateway_fail(405 if endpoint else 404, "err_method", "not allowed")
            elif endpoint == "token":
                response = self._token(request)
            elif endpoint is not None:
                response, records = self._logs(endpoint, request, parsed)
            else:
                response = _gateway_fail(404, "err_not_found", f"no route {request.path}")
            response.headers["Date"] = email.utils.format_datetime(
                self.clock().astimezone(UTC), usegmt=True
            )
            self._record(
                Call(
                    method=request.method,
                    path=request.path,
                    status=response.status,
                    at=arrived,
                    query=query if isinstance(query, dict) else None,
                    page_token=token,
                    page_size=size,
                    records=records,
                    fault=fault[0] if fault else None,
                )
            )
        return response

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if len(self.calls) > MAX_CALLS:
            del self.calls[: MAX_CALLS // 2]

    @staticmethod
    def _parse(request: Request) -> tuple[Any, Any, Any] | None:
        """The ``data[0]``, page token and page size of a log request; None when malformed."""
        try:
            body = request.json()
            data = body.get("data") or [None]
            pagination = (body.get("meta") or {}).get("pagination") or {}
            return data[0], pagination.get("pageToken"), pagination.get("pageSize")
        except (ValueError, AttributeError, TypeError, KeyError, IndexError):
            return None

    def _next_fault(self, endpoint: str) -> tuple[Fault, int | None] | None:
        script = self._faults[endpoint]
        if script:
            return script.popleft()
        if self.temporary_failure_rate and self._random.random() < self.temporary_failure_rate:
            return self._random.choice(TEMPORARY_FAULTS), None
        return None

    def _fault(self, kind: Fault, reset_ms: int | None, token_endpoint: bool) -> Response:
        if kind == "429":
            reset = self.rate_limit_reset_ms if reset_ms is None else reset_ms
            headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}
            headers["X-RateLimit-Reset"] = str(reset)
            return json_response(429, {"detail": "Over throttling limit (100/minute)"}, **headers)
        if kind == "429_bare":
            return json_response(429, {"detail": "Over throttling limit (10000/hour)"})
        if kind == "proxy":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(502, page, {"Content-Type": "text/html"})
        if kind == "drop":
            return Response(200, {"meta": {"status": 200}, "data": [], "fail": []}, drop=True)
        if kind in ("fail_retryable", "fail_permanent"):
            retryable = kind == "fail_retryable"
            code = "err_service_busy" if retryable else "err_validation_blank"
            return json_response(200, _fail_body(code, "emulated failure", retryable))
        if kind == "bad_shape":
            return json_response(200, {"meta": {"status": 200}, "data": {"oops": 1}, "fail": []})
        status = int(kind)
        if token_endpoint and status in (400, 401):
            error = "invalid_client" if status == 401 else "invalid_request"
            return json_response(status, {"error": error, "error_description": "emulated"})
        codes = {401: "token_expired", 403: "err_xdk_forbidden", 418: "err_xdk_binding_expired"}
        code = codes.get(status, f"err_http_{status}")
        return json_response(status, _fail_body(code, "emulated failure", status >= 500, status))

    def _token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        good_id = secrets.compare_digest(form.get("client_id", ""), self.client_id)
        good_secret = secrets.compare_digest(form.get("client_secret", ""), self._secret)
        if self._revoked or not (good_id and good_secret):
            body = {"error": "invalid_client", "error_description": "Client authentication failed"}
            return json_response(401, body)
        access = secrets.token_urlsafe(32)
        self._tokens[access] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return json_response(200, body, **{"Cache-Control": "no-store"})

    def _auth_problem(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization") or ""
        scheme, _, access = header.partition(" ")
        if scheme.lower() != "bearer" or not access:
            return _gateway_fail(401, "token_missing", "Authorization header is missing")
        expires = self._tokens.get(access)
        if expires is None or time.monotonic() >= expires:
            return _gateway_fail(401, "token_expired", "The access token is invalid or expired")
        return None

    def _logs(
        self, endpoint: str, request: Request, parsed: tuple[Any, Any, Any] | None
    ) -> tuple[Response, int]:
        """The answer to a log query and how many records it carries."""
        if problem := self._auth_problem(request):
            return problem, 0
        if parsed is None:
            return json_response(400, _fail_body("err_validation_json", "bad body", False)), 0
        query, token, size = parsed
        try:
            page = self._book.page(
                endpoint,
                query,
                token,
                page_size(size),
                now=self.clock().timestamp(),
                trailing=self.trailing_empty_page,
                past_end=self.past_end,
            )
        except QueryRejected as exc:
            return json_response(200, _fail_body(exc.code, exc.message, False)), 0
        meta: dict[str, Any] = {"pageSize": len(page.records), "totalCount": page.total}
        if page.next_token is not None:
            meta["next"] = page.next_token
        # An empty page carries "data": [], as the real API's does.
        data = [{LOG_KEYS[endpoint]: page.records}] if page.records else []
        body = {"meta": {"status": 200, "pagination": meta}, "data": data, "fail": []}
        return json_response(200, body), len(page.records)
