"""The errors of threatshare, each with a stable ``code`` and a ``kind``.

Every failure of a run is one of two kinds (S4): *temporary* ones are retried and send no
e-mail, *permanent* ones halt the instance and alert its people. ``sync`` decides what a
kind means for an instance's state; the layers below only classify.

Hierarchy::

    ThreatshareError
    ├── ConfigError                 configuration cannot be loaded or is invalid (not a run error)
    ├── TemporaryError              retry with backoff inside the run; no e-mail
    │   ├── NetworkError            network: timeouts, resets, DNS, dropped connections
    │   ├── RateLimited             rate_limited: HTTP 429; ``retry_after`` says how long to wait
    │   ├── UpstreamUnavailable     upstream_unavailable: 5xx, non-JSON body, retryable fail[]
    │   ├── EditLocked              zia_edit_lock: ZIA 409 EDIT_LOCK_NOT_AVAILABLE / Org barrier
    │   ├── ReadOnly                zia_readonly: ZIA 403 STATE_READONLY (maintenance)
    │   └── StoreUnavailable        store_unavailable: Redis briefly unreachable
    └── PermanentError              halt the instance; e-mail
        ├── AuthError               mimecast_auth / zia_auth: bad client, secret, scope, revoked
        ├── Forbidden               zia_forbidden / mimecast_forbidden: role lacks a permission
        ├── QuotaExhausted          quota_exhausted: the tenant's custom-URL quota is used up
        ├── CategoryRefused         category_refused: the category cannot be created or used
        └── RequestRejected         mimecast_request / zia_request: other 4xx, final fail[]

Messages are written for an operator and never contain a secret or a token.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    default_code = "network"


class RateLimited(TemporaryError):
    default_code = "rate_limited"


class UpstreamUnavailable(TemporaryError):
    default_code = "upstream_unavailable"


class EditLocked(TemporaryError):
    default_code = "zia_edit_lock"


class ReadOnly(TemporaryError):
    default_code = "zia_readonly"


class StoreUnavailable(TemporaryError):
    default_code = "store_unavailable"


class PermanentError(ThreatshareError):
    """Needs a person: retrying without a change of configuration or tenant cannot help."""

    kind = "permanent"
    default_code = "permanent"


class AuthError(PermanentError):
    default_code = "auth"


class Forbidden(PermanentError):
    default_code = "forbidden"


class QuotaExhausted(PermanentError):
    default_code = "quota_exhausted"

    def __init__(
        self,
        message: str,
        *,
        pushed: int = 0,
        left_out: int = 0,
        pushed_entries: list[str] | None = None,
        rejected: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        #: The entries that did fit and were pushed (staged) before the quota ran out, newest
        #: first; the caller records them and activates them before halting (S3).
        self.pushed_entries = list(pushed_entries or [])
        #: How many entries were pushed (``len(pushed_entries)`` when those are given).
        self.pushed = pushed or len(self.pushed_entries)
        #: How many entries did not fit.
        self.left_out = left_out
        #: Entries ZIA refused on the way (entry -> reason), as in a normal add.
        self.rejected = dict(rejected or {})


class CategoryRefused(PermanentError):
    default_code = "category_refused"


class RequestRejected(PermanentError):
    default_code = "request_rejected"


# What an operator should do about each permanent code; quoted in the alert e-mail (S6).
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
    "quota_exhausted": "The tenant's custom-URL quota is used up: remove entries from other "
    "custom categories or buy more quota, then run `threatshare resume`.",
    "category_refused": "ZIA refused to create or update the category; check its name and the "
    "limit on custom categories per tenant.",
    "zia_request": "ZIA refused a request; see the message for the field it names.",
}
