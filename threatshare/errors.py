"""The errors of threatshare, each with a stable ``code`` and a ``kind``.

Every failure of a run is one of two kinds (docs/design.md#error-policy): *temporary* ones are
retried and send no e-mail, *permanent* ones halt the instance and alert its people. ``sync``
decides what a kind means for an instance's state; the layers below only classify. *Signals*
are not failures: they tell a caller to change course (stop, look the category up again), so
the HTTP retry policy never retries them; one that ends a run leaves the instance retrying.

Hierarchy (``code`` after the name; the ZIA leaves live in :mod:`threatshare.zia.errors`)::

    ThreatshareError
    ├── ConfigError                 config: configuration cannot be loaded or is invalid (not a
    │                               run error)
    ├── TemporaryError              retry with backoff inside the run; no e-mail. Raised bare with
    │   │                           zia_auth_pending (ZIA refuses a fresh token and the wait for
    │   │                           its key refresh does not fit the run), mimecast_clock (an
    │   │                           answer without a Date header: Mimecast's time is unknown),
    │   │                           bookmark_in_future (a bookmark past Mimecast's now, moved
    │   │                           back: docs/design.md#mimecasts-clock) and internal (a bug in
    │   │                           a run, logged with its traceback; the instance retries)
    │   ├── NetworkError            network: timeouts, resets, DNS, dropped connections
    │   ├── RateLimited             rate_limited: HTTP 429; ``retry_after`` says how long to wait
    │   ├── UpstreamUnavailable     upstream_unavailable: 5xx, non-JSON body, retryable fail[]
    │   │   └── ResponseTooLarge    response_too_large: an answer over the size cap (http_limits)
    │   ├── EditLocked              zia_edit_lock: ZIA 409 EDIT_LOCK_NOT_AVAILABLE / Org barrier
    │   ├── ReadOnly                zia_readonly: ZIA 403 STATE_READONLY (maintenance)
    │   └── StoreUnavailable        store_unavailable: Redis briefly unreachable (see
    │                               :func:`redis_errors`)
    ├── Signal                      never retried; the caller catches it and changes course
    │   ├── LockLost                lock_lost: the run's lock lapsed or was taken over; the run
    │   │                           stops and writes nothing more (docs/design.md#the-fleet)
    │   ├── CategoryGone            zia_category_gone: the stored category id was deleted in ZIA
    │   └── EmptyCategoryRefused    zia_category_needs_entries: ZIA creates the category only
    │                               with a first entry; a run with entries creates it
    └── PermanentError              halt the instance; e-mail
        ├── AuthError               mimecast_auth / zia_auth: bad client, secret, scope, revoked
        ├── Forbidden               zia_forbidden / mimecast_forbidden: role lacks a permission
        ├── QuotaExhausted          quota_exhausted: the tenant's custom-URL quota is used up
        ├── CategoryRefused         category_refused: the category cannot be created or used
        ├── ActivationRefused       activation_refused: ZIA refused POST /status/activate for
        │                           good; every instance of the tenant halts
        └── RequestRejected         mimecast_request / zia_request: other 4xx, final fail[]
            └── ZiaRejected         zia_request: keeps ZIA's own code, message and status

Messages are written for an operator and never contain a secret or a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar, Literal

import redis

Kind = Literal["temporary", "permanent", "config"]


class ThreatshareError(Exception):
    """Base of every error threatshare raises on purpose."""

    kind: ClassVar[Kind]
    default_code: ClassVar[str] = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        """The fields stored in state and shown in status: kind, code and message."""
        return {"kind": self.kind, "code": self.code, "message": self.message}


class ConfigError(ThreatshareError):
    """The configuration cannot be read or is invalid; ``problems`` holds one line per problem."""

    kind = "config"
    default_code = "config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class TemporaryError(ThreatshareError):
    """Worth retrying: the same call may succeed later without anyone changing anything."""

    kind = "temporary"
    default_code = "temporary"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        #: Seconds the server asked us to wait before trying again, when it said so.
        self.retry_after = retry_after


class NetworkError(TemporaryError):
    """The network failed us: a timeout, a reset, DNS, a dropped connection."""

    default_code = "network"


class RateLimited(TemporaryError):
    """An upstream (or our own fleet-wide budget) says: not now; ``retry_after`` says when."""

    default_code = "rate_limited"


class UpstreamUnavailable(TemporaryError):
    """An upstream answered 5xx, a page that is not JSON, or a retryable ``fail[]``."""

    default_code = "upstream_unavailable"


class EditLocked(TemporaryError):
    """ZIA holds its configuration edit lock (409, 412, "Org barrier"): another admin edits."""

    default_code = "zia_edit_lock"


class ReadOnly(TemporaryError):
    """ZIA is in maintenance (403 ``STATE_READONLY`` or ``x-zscaler-mode: read-only``)."""

    default_code = "zia_readonly"


class StoreUnavailable(TemporaryError):
    """Redis could not be reached or answered an error; nothing was recorded."""

    default_code = "store_unavailable"


class Signal(ThreatshareError):
    """Not a failure but a turn: the caller catches it and changes course. Never retried by
    the HTTP policy (retrying cannot change the answer); one that ends a run counts as
    temporary, so the instance simply runs again."""

    kind = "temporary"
    default_code = "signal"


class LockLost(Signal):
    """The run no longer holds its instance's lock (its lease lapsed, or another run took the
    instance): it stops at once, and its fenced writes are refused."""

    default_code = "lock_lost"


class PermanentError(ThreatshareError):
    """Needs a person: retrying without a change of configuration or tenant cannot help."""

    kind = "permanent"
    default_code = "permanent"


class AuthError(PermanentError):
    """The credentials were refused: a wrong client or secret, a scope, a revoked client."""

    default_code = "auth"


class Forbidden(PermanentError):
    """Authenticated, but the API role lacks a permission the product needs."""

    default_code = "forbidden"


class QuotaExhausted(PermanentError):
    """The ZIA tenant's custom-URL quota is used up; what did fit was pushed
    (docs/design.md#capacity)."""

    default_code = "quota_exhausted"

    def __init__(
        self,
        message: str,
        *,
        pushed: int = 0,
        left_out: int = 0,
        rejected: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        #: How many entries were pushed (staged) before the quota ran out.
        self.pushed = pushed
        #: How many entries did not fit.
        self.left_out = left_out
        #: Entries ZIA refused on the way (entry -> reason), as in a normal add.
        self.rejected = dict(rejected or {})


class CategoryRefused(PermanentError):
    """ZIA will not create or use the instance's category (name, or the per-tenant limit)."""

    default_code = "category_refused"


class RequestRejected(PermanentError):
    """An upstream refused a request no other error covers (other 4xx, a final ``fail[]``)."""

    default_code = "request_rejected"


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Redis trouble inside the block surfaces as :class:`StoreUnavailable` (temporary: the run
    or delivery is repeated), named after ``what`` and Redis's error class, never its text."""
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"{what}: Redis {type(exc).__name__}") from exc


# What an operator should do about each permanent code; quoted in the alert e-mail
# (docs/design.md#alerts).
REMEDIES: dict[str, str] = {
    "mimecast_auth": "Check the Mimecast API 2.0 client id and secret, and that the application "
    "is not revoked; update the configuration (or its secret file).",
    "mimecast_forbidden": "Give the Mimecast API application's role Monitoring | URL Protection "
    "| Read and Monitoring | Impersonation Protection | Read.",
    "mimecast_request": "Mimecast refused the request; check the base_url and the account's "
    "licences for URL Protection and Impersonation Protection.",
    "zia_auth": "Check the ZIA credentials (client id/secret, scope, API key, admin password), "
    "and that the API client is not revoked; update the configuration.",
    "zia_forbidden": "Give the ZIA API role full rights on URL Categories and on activation.",
    "quota_exhausted": "The tenant's custom-URL quota leaves this instance no room at all: other "
    "custom categories hold it, less the quota_reserve threatshare never takes. Remove entries "
    "from other custom categories, lower quota_reserve of the [zia.*] table, or buy more "
    "quota, then run `threatshare resume` (a configuration change resumes it too).",
    "category_refused": "ZIA refused to create or update the category; check its name and the "
    "limit on custom categories per tenant.",
    "zia_request": "ZIA refused a request; see the message for the field it names.",
    "activation_refused": "ZIA refused to activate the tenant's staged changes, so nothing "
    "threatshare staged is enforced: give the ZIA API role the right to activate (or check the "
    "admin's status), then run `threatshare resume` for each instance of the tenant.",
}
