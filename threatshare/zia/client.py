"""The ZIA API as threatshare uses it: add and remove entries in batches, read the quota,
activate (docs/design.md#activation); the category calls are in :mod:`threatshare.zia.categories`.

Every request, including the legacy login and activation, first asks the tenant's
:class:`~threatshare.zia.ratelimit.RateLimiter` (a request hook of the HTTP client, so no call can
skip it, retries included). Temporary failures are retried under the run's
:class:`~threatshare.http.RetryPolicy` and deadline. A 401 gets one fresh token at once, then,
because ZIA caches the IdP's signing keys for about a minute, one more after ``reauth_wait``;
only a 401 after that is a permanent ``zia_auth``.

How answers map onto errors is in :mod:`threatshare.zia.errors`; how a refused batch is
searched for its bad entries, in :mod:`threatshare.zia.bisect`. Log lines carry counts only:
never a token, a cookie or a list of entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import structlog

from threatshare.auth import ClientCredentials, Credential
from threatshare.config import ZiaTenant
from threatshare.errors import (
    AuthError,
    Forbidden,
    QuotaExhausted,
    TemporaryError,
    UpstreamUnavailable,
)
from threatshare.http import Deadline, RetryPolicy, make_client, read_json, transport_error
from threatshare.scrub import NO_SECRETS, Scrubber
from threatshare.zia.bisect import push_isolating_refused
from threatshare.zia.categories import (
    ADD,
    REMOVE,
    CategoryCalls,
)
from threatshare.zia.credentials import build_credential
from threatshare.zia.errors import (
    ActivationRefused,
    CategoryGone,
    ZiaRejected,
    raise_for_status,
)
from threatshare.zia.ratelimit import RateLimiter, endpoint, limit_requests

log = structlog.get_logger(__name__)

# Three tries for one call: the first token, a fresh one, a fresh one after ``reauth_wait``.
_AUTH_TRIES = 3


@dataclass(frozen=True)
class Quota:
    """The tenant's custom-URL quota: unique URLs provisioned and still available."""

    used: int
    remaining: int


def _short_quota(
    why: str,
    pushed: int,
    pending: list[str],
    batches: Iterator[list[str]],
    rejected: dict[str, str],
) -> QuotaExhausted:
    left_out = len(pending) + sum(len(b) for b in batches)
    return QuotaExhausted(
        f"{why}: {pushed} entries pushed, {left_out} did not fit",
        pushed=pushed,
        left_out=left_out,
        rejected=rejected,
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ZiaClient(CategoryCalls):
    """One run's connection to one ZIA tenant."""

    def __init__(
        self,
        tenant: ZiaTenant,
        *,
        limiter: RateLimiter,
        deadline: Deadline,
        policy: RetryPolicy | None = None,
        credential: Credential | None = None,
        transport: httpx.BaseTransport | None = None,
        reauth_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        scrub: Scrubber = NO_SECRETS,
    ) -> None:
        self._scrub = scrub
        self._deadline = deadline
        self._policy = policy or RetryPolicy()
        self._reauth_wait = reauth_wait
        self._sleep = sleep
        self._http = make_client(tenant.resolved_api_base, transport=transport)
        limit_requests(self._http, limiter, lambda: self._deadline)
        #: The quota as last read, for status (docs/design.md#capacity).
        self.last_quota: Quota | None = None
        self._own_credential = credential is None
        try:
            self._credential = credential or build_credential(tenant, self._http, transport, scrub)
        except BaseException:
            self._http.close()
            raise

    # -- plumbing ------------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, params: dict[str, str] | None, body: Any, what: str
    ) -> httpx.Response:
        headers = self._credential.headers()
        request = self._http.build_request(method, path, params=params, json=body, headers=headers)
        try:
            # Streamed: the caller decides whether the body is worth reading (see _call).
            return self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise transport_error(exc, what) from None

    @staticmethod
    def _finish(response: httpx.Response, read: bool, what: str) -> None:
        try:
            if read:
                response.read()
        except httpx.TransportError as exc:
            raise transport_error(exc, what) from None
        finally:
            response.close()

    def _refused_token(self, refusals: int, what: str) -> None:
        """After the ``refusals``-th 401 of one call: forget the token, and before the last try
        wait for ZIA to refresh its copy of the IdP's keys."""
        self._credential.invalidate()
        if refusals < _AUTH_TRIES - 1:
            return
        if self._reauth_wait >= self._deadline.remaining():
            raise TemporaryError(
                f"{what}: ZIA refused a fresh token; it is tried again after a wait that does "
                "not fit in this run",
                code="zia_auth_pending",
                retry_after=self._reauth_wait,
            )
        log.warning("zia_token_refused", call=what, wait_s=self._reauth_wait)
        self._sleep(self._reauth_wait)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        missing_ok: bool = False,
        want_answer: bool = True,
    ) -> Any:
        """One ZIA call with retries; its JSON answer (``None`` for a 404 when ``missing_ok``).

        ZIA answers an ADD/REMOVE with the whole category, every URL of it: tens of megabytes
        for a full one. Without ``want_answer`` a successful answer is not even read."""
        what = f"ZIA {method} {endpoint(path)}"
        refusals = 0

        def attempt() -> Any:
            nonlocal refusals
            for _ in range(_AUTH_TRIES):
                response = self._send(method, path, params, body, what)
                if response.status_code != 401:
                    break
                refusals += 1
                if refusals >= _AUTH_TRIES:
                    break
                self._finish(response, False, what)
                self._refused_token(refusals, what)
            if response.status_code != 401:
                self._credential.used()
            ok = 200 <= response.status_code < 300
            self._finish(response, want_answer or not ok, what)
            if missing_ok and response.status_code == 404:
                return None
            raise_for_status(response, what, self._scrub)
            if not want_answer:
                return None
            return read_json(response, what) if response.content else None

        return self._policy.call(self._deadline, what, attempt)

    # -- entries -------------------------------------------------------------------------------

    def _put(self, category_id: str, name: str, action: str, urls: list[str]) -> None:
        try:
            self._call(
                "PUT",
                f"/urlCategories/{category_id}",
                params={"action": action},
                body={"configuredName": name, "superCategory": "USER_DEFINED", "urls": urls},
                want_answer=False,
            )
        except ZiaRejected as exc:
            if exc.status == 404:
                raise CategoryGone(
                    f"ZIA category {category_id} ({name!r}) no longer exists; it is found or "
                    "created again on the next run",
                    category_id=category_id,
                ) from None
            raise

    def add_batches(
        self,
        category_id: str,
        name: str,
        batches: Iterable[list[str]],
        on_batch: Callable[[list[str]], None],
        *,
        room: int | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Stage ``batches`` of distinct entries (newest first) in the category, pulled one at
        a time, so memory holds one batch whatever the number of entries.

        Reads the quota once (unless the caller read it and passes the ``room`` left) and
        pushes only what fits, newest first; then raises :class:`QuotaExhausted` saying how many
        were pushed and left out. A batch ZIA refuses because of some entries is searched for
        them (:mod:`threatshare.zia.bisect`), which are rejected. ``on_batch`` hears of every
        batch ZIA accepted, as soon as it did, so the caller can record progress durably.
        Returns (entries pushed, entries refused -> reason)."""
        stream = iter(batches)
        first = next(stream, None)
        if not first:
            return 0, {}
        pushed = 0
        rejected: dict[str, str] = {}

        def put(urls: list[str]) -> None:
            self._put(category_id, name, ADD, urls)

        def done(batch: list[str]) -> None:
            nonlocal pushed
            pushed += len(batch)
            on_batch(batch)

        free = self.quota().remaining if room is None else room
        room = free
        pending: list[str] = first
        batch: list[str] = []
        before = 0
        try:
            while pending and room > 0:
                # Refused entries take no quota, so the room left is recomputed after each batch.
                batch, pending = pending[:room], pending[room:]
                before = pushed
                push_isolating_refused(put, batch, done, rejected)
                room -= pushed - before
                if not pending:
                    pending = next(stream, None) or []
        except QuotaExhausted as exc:
            # What of the refused batch did not land is left out too.
            unpushed = [e for e in batch if e not in rejected][pushed - before :]
            raise _short_quota(exc.message, pushed, unpushed + pending, stream, rejected) from None
        log.info("zia_added", pushed=pushed, rejected=len(rejected), quota=room)
        if pending:
            why = f"ZIA's custom-URL quota is used up ({free} were free)"
            raise _short_quota(why, pushed, pending, stream, rejected)
        return pushed, rejected

    def remove(
        self,
        category_id: str,
        name: str,
        entries: Sequence[str],
        batch_size: int,
        on_batch: Callable[[list[str]], None] | None = None,
    ) -> int:
        """Remove ``entries`` from the category, ``batch_size`` per request; how many went.
        ``on_batch`` hears of every batch ZIA accepted, as soon as it did, so the caller can
        record each removal durably even when a later batch fails."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        removed = 0
        refused: dict[str, str] = {}

        def put(urls: list[str]) -> None:
            self._put(category_id, name, REMOVE, urls)

        def done(batch: list[str]) -> None:
            nonlocal removed
            removed += len(batch)
            if on_batch is not None:
                on_batch(batch)

        for batch in _chunks(list(dict.fromkeys(entries)), batch_size):
            push_isolating_refused(put, batch, done, refused)
        log.info("zia_removed", removed=removed, refused=len(refused))
        return removed

    # -- tenant --------------------------------------------------------------------------------

    def quota(self) -> Quota:
        """The tenant's custom-URL quota (counted over unique URLs of all custom categories)."""
        answer = self._call("GET", "/urlCategories/urlQuota")
        try:
            used = int(answer["uniqueUrlsProvisioned"])
            remaining = int(answer["remainingUrlsQuota"])
        except (TypeError, KeyError, ValueError):
            raise UpstreamUnavailable(
                "ZIA GET /urlCategories/urlQuota: unexpected answer"
            ) from None
        self.last_quota = Quota(used=used, remaining=remaining)
        return self.last_quota

    def activate(self) -> None:
        """Make every staged change of the tenant active (``POST /status/activate``).

        A 403 (other than maintenance), or a 401 that survives a fresh token, is
        :class:`ActivationRefused`: retrying cannot help, and staged changes protect nobody."""
        try:
            answer = self._call("POST", "/status/activate")
        except (AuthError, Forbidden) as exc:
            raise ActivationRefused(f"ZIA refused to activate: {exc.message}") from None
        except TemporaryError as exc:
            if exc.code != "zia_auth_pending":
                raise
            # A fresh token was refused too; the key-cache wait did not fit this activation.
            raise ActivationRefused(f"ZIA refused to activate: {exc.message}") from None
        status = answer.get("status") if isinstance(answer, dict) else None
        log.info("zia_activated", status=status if isinstance(status, str) else None)

    def pending(self) -> bool:
        """Whether the tenant has changes staged and not yet activated (``GET /status``):
        anything but ``ACTIVE`` counts as pending."""
        answer = self._call("GET", "/status")
        status = answer.get("status") if isinstance(answer, dict) else None
        return status != "ACTIVE"

    def check(self) -> str:
        """One read call for ``check --live``: the quota, which also proves the credentials."""
        quota = self.quota()
        return f"{quota.used} custom URLs provisioned, {quota.remaining} remaining"

    def close(self) -> None:
        if self._own_credential and isinstance(self._credential, ClientCredentials):
            self._credential.close()
        self._http.close()

    def __enter__(self) -> ZiaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
