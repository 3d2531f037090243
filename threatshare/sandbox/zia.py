"""An emulated ZIA tenant: URL categories, activation, auth and rate limits, on loopback.

Serves the cloud-service API under both ``/api/v1`` (legacy and ZIA-native OAuth) and
``/zia/api/v1`` (OneAPI), as ZIA's API documentation describes it: custom URL categories with
ZIA's URL rules and quota (:mod:`.zia_categories`, :mod:`.zia_urls`), staged changes that only
``POST /status/activate`` makes active, the documented per-endpoint rate limits
(:mod:`.zia_limits`), bearer tokens of an :class:`~threatshare.sandbox.idp.IdpEmulator` and the
legacy ``JSESSIONID`` login (:mod:`.zia_sessions`).

A request goes through, in order: authentication (401: belongs to no tenant, counts toward no
limit), an injected 401/429 (counts toward nothing), the rate limiter (429), any other injected
failure, then the endpoint itself. Every answer is logged in :attr:`ZiaEmulator.calls`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import Request, Response, json_response, sleep_latency
from threatshare.sandbox.zia_categories import CategoryStore, Refused, invalid_input
from threatshare.sandbox.zia_failures import (
    FAILURE_KINDS,
    TEMPORARY_KINDS,
    UNCOUNTED,
    Failure,
    FailurePlan,
    failure_response,
)
from threatshare.sandbox.zia_limits import Call, SlidingWindows, violations
from threatshare.sandbox.zia_routes import METHODS, PREFIXES, SESSION, Route, resolve
from threatshare.sandbox.zia_sessions import SESSION_INFO, LegacySessions, session_cookie

__all__ = ["FAILURE_KINDS", "Call", "ZiaEmulator"]

#: The gateway window every real answer reports (``x-ratelimit-*``; recorded answers).
GATEWAY_WINDOW = 60.0
GATEWAY_LIMIT = 5000


class ZiaEmulator:
    """One ZIA tenant; an app for ``EmulatorServer``. Every knob and method is thread-safe."""

    def __init__(
        self,
        *,
        idp: IdpEmulator | None = None,
        scope: str | None = None,
        audience: str | None = None,
        url_quota: int = 25_000,
        time_scale: float = 1.0,
        enforce_limits: bool = True,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        session_idle: float = 300.0,
        seed: int = 0,
        refuse_empty_categories: bool = False,
    ) -> None:
        self.idp = idp
        self.scope = scope
        self.audience = audience
        self.enforce_limits = enforce_limits
        #: Seconds every answer is delayed by (outside the tenant lock).
        self.latency = 0.0
        #: Fraction of calls answered with a random kind from ``temporary_failure_kinds``.
        self.temporary_failure_rate = 0.0
        #: The kinds random failures are drawn from; add ``"drop"`` for dropped connections.
        self.temporary_failure_kinds: tuple[str, ...] = TEMPORARY_KINDS
        #: The wait an injected 429 asks for, in seconds.
        self.injected_retry_after = 1
        #: Entries the tenant refuses on top of the built-in URL rules.
        self.invalid_urls: set[str] = set()
        #: A fixed ``x-ratelimit-reset`` for every answer (None: the gateway window's own).
        self.gateway_reset: int | None = None
        #: Called with (method, path) before each call is served, outside the tenant's lock:
        #: where a test plays another admin or worker acting at that very moment.
        self.before_call: Callable[[str, str], None] | None = None
        self.calls: list[Call] = []
        self.count_429 = 0
        self.activations = 0
        self._lock = threading.Lock()
        self._clock = time.monotonic
        self._store = CategoryStore(
            url_quota=url_quota,
            extra_invalid=lambda url: url in self.invalid_urls,
            refuse_empty=refuse_empty_categories,
        )
        self._windows = SlidingWindows(time_scale)
        self._sessions = LegacySessions(
            api_key=api_key, username=username, password=password, idle=session_idle
        )
        self._failures = FailurePlan(seed)
        self.seed = seed
        self._gateway_started = self._clock()
        self._gateway_window = 0
        self._gateway_calls = 0

    # -- knobs ----------------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = value
        self._failures.reseed(value)

    @property
    def time_scale(self) -> float:
        return self._windows.time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        self._windows.time_scale = value

    @property
    def url_quota(self) -> int:
        return self._store.url_quota

    @url_quota.setter
    def url_quota(self, value: int) -> None:
        with self._lock:
            self._store.url_quota = value

    @property
    def refuse_empty_categories(self) -> bool:
        """Whether creating a category with no URL or keyword is refused (400)."""
        return self._store.refuse_empty

    @refuse_empty_categories.setter
    def refuse_empty_categories(self, value: bool) -> None:
        with self._lock:
            self._store.refuse_empty = value

    @property
    def session_idle(self) -> float:
        return self._sessions.idle

    @session_idle.setter
    def session_idle(self, value: float) -> None:
        self._sessions.idle = value

    def fail_next(self, kind: str, count: int = 1, *, path: str | None = None) -> None:
        """Answer the next ``count`` calls (to ``path`` only, when given: a full path, a path
        without the API prefix, or a template such as ``/urlCategories/{id}``) with a failure.

        ``"drop"`` performs the call, then drops the connection mid-response; ``"403_readonly"``
        spares GETs, which work during maintenance."""
        with self._lock:
            self._failures.add(kind, count, path)

    def expire_sessions(self) -> None:
        """End every legacy session, as if each had idled out."""
        with self._lock:
            self._sessions.expire_all()

    def record_history(self, bucket: str, ages: Iterable[float]) -> None:
        """Log answered calls to ``bucket`` (such as ``"POST /status/activate"``) made ``ages``
        seconds ago, as if the tenant had been in use before the emulator started: they count
        toward its limits and show in :attr:`calls` and :meth:`limit_violations`. A benchmark
        starts a tenant with its hourly activation budget already spent this way. History goes
        before the first call; ages that break a limit are refused (ValueError)."""
        method, _, path = bucket.partition(" ")
        with self._lock:
            if self.calls:
                raise RuntimeError("history is recorded before the first call")
            now = self._clock()
            for age in sorted(ages, reverse=True):
                at = now - age
                if self._windows.admit(bucket, at) is not None:
                    raise ValueError(f"a call {age:.1f}s ago would exceed a limit of {bucket}")
                self.calls.append(Call(method, f"/api/v1{path}", 200, at, bucket))

    # -- an admin at the portal: edits that bypass the API, its limits and its log -----------

    def admin_create(self, name: str, urls: list[str], description: str = "") -> str:
        """Create a custom category by hand (it shares the tenant's quota); returns its id."""
        body = {"configuredName": name, "superCategory": "USER_DEFINED", "urls": urls}
        with self._lock:
            return self._store.create({**body, "description": description}).id

    def admin_edit(self, name: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Add or remove URLs of the custom category ``name`` by hand."""
        with self._lock:
            category = self._store.by_name(name)
            if category is None:
                raise KeyError(name)
            body = {"configuredName": name, "superCategory": "USER_DEFINED"}
            if add:
                self._store.add(category.id, {**body, "urls": list(add)})
            if remove:
                self._store.remove(category.id, {**body, "urls": list(remove)})

    def admin_delete(self, name: str) -> None:
        """Delete the custom category ``name`` by hand."""
        with self._lock:
            category = self._store.by_name(name)
            if category is None:
                raise KeyError(name)
            self._store.delete(category.id)

    def quota(self) -> dict[str, int]:
        """The tenant's quota as GET /urlCategories/urlQuota answers it."""
        with self._lock:
            return self._store.quota()

    # -- introspection --------------------------------------------------------------------------

    def categories(self) -> list[dict[str, Any]]:
        """The staged custom categories, as GET /urlCategories/{id} shows them."""
        with self._lock:
            return [category.as_json() for category in self._store.custom()]

    def staged_urls(self, name: str) -> set[str]:
        with self._lock:
            category = self._store.by_name(name)
            return set(category.items("urls")) if category else set()

    def active_urls(self, name: str) -> set[str]:
        """URLs of the custom category ``name`` as of the last activation (empty if none)."""
        with self._lock:
            return self._store.active_urls(name)

    def limit_violations(self) -> list[str]:
        """Calls answered beyond a documented limit, re-checked from the call log."""
        with self._lock:
            calls = list(self.calls)
        return violations(calls, self.time_scale)

    # -- HTTP -----------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        sleep_latency(self.latency)
        if self.before_call is not None:
            self.before_call(request.method, request.path)
        route = resolve(request.method, request.path)
        payload = _payload(request)  # parsed outside the lock: bodies can hold 10,000 URLs
        with self._lock:
            now = self._clock()
            response = self._serve(request, route, payload, now)
            self.calls.append(
                Call(request.method, request.path, response.status, now, route.bucket)
            )
            if response.status == 429:
                self.count_429 += 1
            gateway = self._gateway_headers(now)
        for name, value in gateway.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("x-zscaler-mode", "read-write")
        response.headers.setdefault("Cache-Control", "no-store, no-cache")
        return response

    def _gateway_headers(self, now: float) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers the real service sends on every answer, 5xx included:
        a 60-second gateway window, its limit, what is left, and the seconds until it resets."""
        elapsed = now - self._gateway_started
        window = int(elapsed // GATEWAY_WINDOW)
        if window != self._gateway_window:
            self._gateway_window, self._gateway_calls = window, 0
        self._gateway_calls += 1
        reset = max(1, int(GATEWAY_WINDOW - elapsed % GATEWAY_WINDOW))
        if self.gateway_reset is not None:
            reset = self.gateway_reset
        return {
            "x-ratelimit-limit": f"{GATEWAY_LIMIT}, {GATEWAY_LIMIT};w={int(GATEWAY_WINDOW)}",
            "x-ratelimit-remaining": str(max(0, GATEWAY_LIMIT - self._gateway_calls)),
            "x-ratelimit-reset": str(reset),
        }

    def owns(self, request: Request, claims: dict[str, Any] | None) -> bool:
        """Whether a request on a shared API host is for this tenant: a token the IdP issued
        for its scope (or audience client), or its legacy login or session."""
        if claims is not None:
            return self._claims_fit(claims)
        cookie = session_cookie(request.headers.get("Cookie"))
        payload = _payload(request) if request.method == "POST" else None
        username = payload.get("username") if isinstance(payload, dict) else None
        with self._lock:
            return self._sessions.owns(cookie, username)

    def _serve(self, request: Request, route: Route, payload: Any, now: float) -> Response:
        if route.template != SESSION and (refusal := self._authenticate(request)):
            return refusal
        failure = self._failures.pending(
            {request.path, route.path, route.template},
            route.method,
            self.temporary_failure_rate,
            self.temporary_failure_kinds,
        )
        if failure is not None and failure.kind in UNCOUNTED:
            return self._fail(failure)
        if self.enforce_limits:
            # The logged call carries the same instant, so limit_violations() sees what admit saw.
            refused = self._windows.admit(route.bucket, now)
            if refused is not None:
                headers = {"Retry-After": str(refused.retry_after)}
                return json_response(429, refused.body, **headers)
        if failure is not None and failure.kind != "drop":
            return self._fail(failure)
        try:
            response = self._dispatch(request, route, payload)
        except Refused as refusal:
            response = refusal.response()
        if failure is not None:
            self._failures.consume(failure)
            response.drop = True
        return response

    # -- authentication -------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer ":
            claims = self.idp.validate(header[7:].strip()) if self.idp else None
            if claims is not None and self._claims_fit(claims):
                return None
            body: dict[str, str] = {
                "code": "UNAUTHORIZED",
                "message": "The access token is invalid or expired",
            }
            if request.path.startswith(PREFIXES[0] + "/"):
                body = {"detail": "unauthorized"}  # the OneAPI gateway's answer, as recorded
            return json_response(401, body, **{"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if self._sessions.touch(session_cookie(request.headers.get("Cookie"))):
            return None
        return failure_response("401", 0)

    def _claims_fit(self, claims: dict[str, Any]) -> bool:
        if self.scope is None and self.audience is None:
            return True
        granted = (claims.get("scope") or "").split()
        return bool(
            (self.scope is not None and self.scope in granted)
            or (self.audience is not None and claims.get("aud") == self.audience)
        )

    def _fail(self, failure: Failure) -> Response:
        self._failures.consume(failure)
        return failure_response(failure.kind, self.injected_retry_after)

    # -- endpoints ------------------------------------------------------------------------------

    def _dispatch(self, request: Request, route: Route, payload: Any) -> Response:
        if route.template is None:
            raise Refused(404, f"No such API: {route.path}", "RESOURCE_NOT_FOUND")
        if route.method not in METHODS[route.template]:
            raise Refused(405, f"Method {route.method} is not allowed on {route.template}")
        if isinstance(payload, Response):
            return payload
        if route.template == SESSION:
            return self._session_call(request, route, payload)
        store, method = self._store, route.method
        match route.template:
            case "/urlCategories" if method == "GET":
                return _ok(
                    store.listing(
                        custom_only=_true(request.arg("customOnly")),
                        counts_only=_true(request.arg("includeOnlyUrlKeywordCounts")),
                        kind=request.arg("type"),
                    )
                )
            case "/urlCategories":
                return _ok(store.create(payload).as_json())
            case "/urlCategories/lite":
                return _ok(store.lite())
            case "/urlCategories/urlQuota":
                return _ok(store.quota())
            case "/status":
                return _ok({"status": "PENDING" if store.pending else "ACTIVE"})
            case "/status/activate":
                store.activate()
                self.activations += 1
                return _ok({"status": "ACTIVE"})
        return self._category_call(request, route, payload)

    def _category_call(self, request: Request, route: Route, payload: Any) -> Response:
        store, category_id = self._store, route.category_id or ""
        if route.method == "GET":
            return _ok(store.get(category_id).as_json())
        if route.method == "DELETE":
            store.delete(category_id)
            return Response(204)
        action = request.arg("action")
        if action is None:
            return _ok(store.replace(category_id, payload).as_json())
        if action == "ADD_TO_LIST":
            return _ok(store.add(category_id, payload).as_json())
        if action == "REMOVE_FROM_LIST":
            return _ok(store.remove(category_id, payload).as_json())
        raise invalid_input(f"Invalid action {action}")

    def _session_call(self, request: Request, route: Route, payload: Any) -> Response:
        cookie = session_cookie(request.headers.get("Cookie"))
        if route.method == "POST":
            session = self._sessions.login(payload)
            cookie_header = f"JSESSIONID={session}; Path=/; Secure; HttpOnly"
            return json_response(200, dict(SESSION_INFO), **{"Set-Cookie": cookie_header})
        if route.method == "GET":
            # ZIA answers 200 even for a dead session; only authType tells them apart.
            return _ok(dict(SESSION_INFO) if self._sessions.touch(cookie) else {})
        if self._sessions.end(cookie):
            if self._store.pending:  # logging out activates the admin's staged changes
                self._store.activate()
                self.activations += 1
            return Response(204)
        if self._authenticate(request) is None:  # a bearer token: nothing to end
            return Response(204)
        return failure_response("401", 0)


def _ok(body: Any) -> Response:
    return json_response(200, body)


def _true(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _payload(request: Request) -> Any:
    """The JSON body of a POST or PUT; a ``Response`` (415 or 400) when it cannot be read."""
    if request.method not in ("POST", "PUT") or not request.body:
        return None
    content_type = request.headers.get("Content-Type") or ""
    if not content_type.lower().startswith("application/json"):
        body = {"message": f"Content type '{content_type or 'none'}' is not supported"}
        return json_response(415, body)
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return json_response(400, {"message": "Request body is invalid."})
