"""The long-lived resources of one process: configuration, Redis, and cached credentials.

Built once at the edge (the CLI, or a worker process) and passed down. Credentials are cached
per Mimecast account and ZIA tenant for the life of the process, so consecutive runs reuse a
token instead of fetching one each; a changed table (new secret) gets a new credential.

``rt.now()`` is Mimecast's clock (docs/design.md#mimecasts-clock): the clock the caller gives
(``now=``, the product's own) corrected by the offset every Mimecast answer's ``Date`` header
shows, for the account of the run in progress (:mod:`threatshare.mimecast_clock`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from threatshare.auth import Credential, LegacySession
from threatshare.config import Config, MimecastAccount, ZiaTenant
from threatshare.errors import UpstreamUnavailable
from threatshare.http import Deadline, RetryPolicy, make_client
from threatshare.mimecast import MimecastClient, account_credential
from threatshare.mimecast_clock import MimecastClock
from threatshare.progress import ProgressSink, ignore
from threatshare.scrub import Scrubber
from threatshare.zia.client import ZiaClient
from threatshare.zia.credentials import legacy_session, token_credential
from threatshare.zia.ratelimit import Limit, RateLimiter, limit_requests

#: How long a login may wait for the tenant's rate-limit budget.
LOGIN_BUDGET_WAIT = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    redis: redis.Redis
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: Given: the product's own clock. Once built: Mimecast's clock (see the module's note);
    #: the product's own stays in ``clock.local``.
    now: Callable[[], datetime] = _now
    #: ZIA's hour and minute windows divided by this (tests and the sandbox use > 1).
    time_scale: float = 1.0
    #: ZIA's limits by method, replacing its documented table (a benchmark that drives
    #: simulated days against an emulator enforcing nothing); None: ZIA's own.
    zia_method_limits: Mapping[str, tuple[Limit, ...]] | None = None
    #: Wait before the last try of a ZIA 401 that survives a fresh token (JWKS caching).
    zia_reauth_wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    #: Where runs report their progress (``run --once`` on a terminal shows it).
    progress: ProgressSink = ignore
    #: The clock of run deadlines (seconds, monotonic).
    monotonic: Callable[[], float] = time.monotonic
    _credentials: dict[tuple[str, str, int], Any] = field(default_factory=dict)

    #: Lease of a run's lock: renewed while the run lives, so a dead worker's instance is
    #: free again this soon (docs/design.md#the-fleet).
    lock_lease: float = 30.0
    #: Mimecast's clock per account, read from the answers of this process.
    clock: MimecastClock = field(init=False)

    def __post_init__(self) -> None:
        self.clock = MimecastClock(self.now, self.monotonic)
        self.now = self.clock

    def mimecast_now(self, account: str, deadline: Deadline, kind: str = "url") -> datetime:
        """Mimecast's now for ``account``, to decide a window on: from this process's reading
        while it is fresh, else from one answer of Mimecast asked now (of the ``kind`` of log
        the run reads), never from the product's clock alone."""
        if not self.clock.fresh(account):
            with self.mimecast_client(account, deadline) as client:
                client.probe(kind)
            if not self.clock.fresh(account):
                raise UpstreamUnavailable(
                    f"Mimecast account {account}: the answer carried no Date header, so "
                    "Mimecast's clock is unknown and no window is decided",
                    code="mimecast_clock",
                )
        return self.clock.now(account)

    @functools.cached_property
    def scrub(self) -> Scrubber:
        """Removes every configured secret value from upstream text (docs/design.md#security)."""
        return Scrubber(self.config.secret_values())

    def _cached(self, kind: str, name: str, table: Any, make: Callable[[], Any]) -> Any:
        key = (kind, name, hash(table.model_dump_json()) ^ hash(_secrets_of(table)))
        if key not in self._credentials:
            self._credentials = {k: v for k, v in self._credentials.items() if k[:2] != key[:2]}
            self._credentials[key] = make()
        return self._credentials[key]

    def close(self) -> None:
        """Close the cached credentials' connections (end of the process or command)."""
        for credential in self._credentials.values():
            close = getattr(credential, "close", None)
            if close is not None:
                close()
        self._credentials.clear()

    def _legacy_session(self, tenant: ZiaTenant) -> LegacySession:
        """A legacy ZIA session kept across runs: logins count against ZIA's limits (and its
        session table), so a process logs in again only when the session idled out or was
        refused. It has its own connection, rate-limited like every ZIA call."""
        http = make_client(tenant.resolved_api_base)
        limiter = self._limiter(tenant)
        limit_requests(http, limiter, lambda: Deadline.after(LOGIN_BUDGET_WAIT))
        return legacy_session(tenant, http, self.scrub)

    def mimecast_credential(self, name: str) -> Credential:
        account: MimecastAccount = self.config.mimecast[name]
        return self._cached(
            "mimecast", name, account, lambda: account_credential(account, scrub=self.scrub)
        )

    def mimecast_client(self, name: str, deadline: Deadline) -> MimecastClient:
        return MimecastClient(
            self.config.mimecast[name],
            deadline=deadline,
            policy=self.policy,
            credential=self.mimecast_credential(name),
            scrub=self.scrub,
            observe=functools.partial(self.clock.observe, name),
        )

    def _limiter(self, tenant: ZiaTenant) -> RateLimiter:
        if self.zia_method_limits is None:
            return RateLimiter(self.redis, tenant.tenant_id, time_scale=self.time_scale)
        return RateLimiter(
            self.redis, tenant.tenant_id, limits={}, method_limits=self.zia_method_limits
        )

    def zia_client(self, name: str, deadline: Deadline) -> ZiaClient:
        tenant: ZiaTenant = self.config.zia[name]
        limiter = self._limiter(tenant)
        if tenant.auth == "legacy":
            credential = self._cached("zia", name, tenant, lambda: self._legacy_session(tenant))
        else:
            credential = self._cached(
                "zia", name, tenant, lambda: token_credential(tenant, scrub=self.scrub)
            )
        return ZiaClient(
            tenant,
            limiter=limiter,
            deadline=deadline,
            policy=self.policy,
            credential=credential,
            reauth_wait=self.zia_reauth_wait,
            sleep=self.sleep,
            scrub=self.scrub,
        )


def _secrets_of(table: Any) -> tuple[str, ...]:
    """Secret values of a table, for the cache key only (never stored or shown)."""
    out = []
    for name in type(table).model_fields:
        value = getattr(table, name)
        if hasattr(value, "get_secret_value"):
            out.append(value.get_secret_value())
    return tuple(out)
