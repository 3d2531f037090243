"""The configuration's models (docs/design.md#configuration): every table and key, with its defaults
and per-field rules.

Each model validates its own fields at construction; rules that span tables (names,
references, shared categories, the fields each ``auth`` mode needs) are checked by
:mod:`threatshare.config.loading`, which builds a :class:`Config` from the sources.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from threatshare.config.listen import parse_listen
from threatshare.config.recipients import EMAIL_PATTERN, Recipients, is_webhook
from threatshare.config.rule_formats import ENDPOINT_LINE, WRAPPER_LINE, allow_problem
from threatshare.durations import Duration
from threatshare.http import url_problem

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CATEGORY_PATTERN = re.compile(r"^[A-Za-z0-9 _\-.()]+$")
# Deliberately plain: a local part and a dotted domain, no spaces, no CR/LF (header safety).
#: How far back Mimecast keeps its logs: the farthest a window (and fetch_from) can reach.
MIMECAST_RETENTION = timedelta(days=30)
MIN_INTERVAL = timedelta(seconds=10)
MIN_RECONCILE = timedelta(minutes=1)
MIN_EXPIRE_AFTER = timedelta(hours=1)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
ENV_PREFIX = "THREATSHARE_"
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_CONFIG_PATH = "threatshare.toml"

Source = Literal["malicious_domains", "malicious_urls", "url_domains"]


def _check_email(value: str) -> str:
    if not EMAIL_PATTERN.fullmatch(value):
        raise ValueError("is not a valid e-mail address")
    return value


def _check_url(value: str) -> str:
    if problem := url_problem(value):
        raise ValueError(f"URL {problem}")
    return value.rstrip("/")


Email = Annotated[str, AfterValidator(_check_email)]


def _check_reserve(value: object) -> int | str:
    """A count of custom-URL slots (``500``) or a share of the tenant's quota (``"5%"``)."""
    problem = "must be a count such as 500 or a share such as '5%'"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _PERCENT.fullmatch(text)
    if match is None:
        raise ValueError(problem)
    if float(match.group(1)) >= 100:
        raise ValueError("must be a share below 100%")
    return f"{match.group(1)}%"


QuotaReserve = Annotated[int | str, BeforeValidator(_check_reserve)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Model):
    redis_url: SecretStr | None = None  # may carry a password
    state_dir: Path = Path("~/.local/state/threatshare")
    interval: Duration = timedelta(seconds=60)
    overlap: Duration = timedelta(minutes=5)
    settle: Duration = timedelta(seconds=5)
    run_deadline: Duration = timedelta(minutes=5)
    secrets_dir: Path | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    admins: Recipients = []
    protected_hosts: list[str] = []  # added to the built-in list shipped with the package
    # The rules of docs/design.md#what-is-never-blocked, each added to the data shipped in
    # threatshare/indicators/data/ (same line formats as there).
    protected_endpoints: list[str] = []  # HOST/PATH, `*` for one path segment
    wrappers: list[str] = []  # HOST[/PATH] query:A,B | path:N | opaque
    policy_verdicts: list[str] = []  # a Mimecast category or tagMap key
    # HOST:PORT of the operations endpoint inside `threatshare run`
    # (docs/design.md#operations-endpoint); none when unset.
    listen: str | None = None
    #: How often each instance compares its record of entries with its category in ZIA
    #: (docs/design.md#reconciliation).
    reconcile_every: Duration = timedelta(hours=24)
    #: How long the audit trail keeps a change (docs/design.md#provenance-and-audit).
    audit_retention: Duration = timedelta(days=90)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not at the first connection: `status` would fail on an http:// URL.
        # The message never repeats the URL (it may carry a password).
        if value is not None and urlsplit(value.get_secret_value()).scheme not in REDIS_SCHEMES:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("protected_endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for line in value:
            if not ENDPOINT_LINE.fullmatch(line.strip()):
                raise ValueError(f"{line!r} is not HOST/PATH (e.g. 'login.example.com/*/oauth2')")
        return value

    @field_validator("wrappers")
    @classmethod
    def _wrappers(cls, value: list[str]) -> list[str]:
        for line in value:
            if not WRAPPER_LINE.fullmatch(line.strip()):
                raise ValueError(
                    f"{line!r} is not 'HOST[/PATH] DECODER' with DECODER one of query:NAME[,NAME], "
                    "path:N, opaque"
                )
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < MIN_INTERVAL:
            raise ValueError("must be at least 10s")
        return value

    @field_validator("overlap", "settle")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("run_deadline")
    @classmethod
    def _deadline(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=10) <= value <= timedelta(hours=1):
            raise ValueError("must be between 10s and 1h")
        return value

    @field_validator("reconcile_every")
    @classmethod
    def _reconcile_every(cls, value: timedelta) -> timedelta:
        if value < MIN_RECONCILE:
            raise ValueError("must be at least 1m (one GET of the category each time)")
        return value

    @field_validator("audit_retention")
    @classmethod
    def _audit_retention(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise ValueError("must be at least 1d (the help desk looks back days, not minutes)")
        return value

    @property
    def resolved_state_dir(self) -> Path:
        return self.state_dir.expanduser()


class Smtp(_Model):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: Email
    timeout: Duration = timedelta(seconds=30)
    # A private CA for the SMTP server's certificate; verification itself is never switched off.
    ca_file: Path | None = None

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        # It goes into the From header: not even a trailing newline (which `$` lets through).
        if not EMAIL_PATTERN.fullmatch(value):
            raise ValueError("is not a valid e-mail address")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.:-]+", value):
            raise ValueError("must be a host name or an IP address")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError("file does not exist")
        return None if value is None else value.expanduser()

    @model_validator(mode="after")
    def _no_clear_text_login(self) -> Smtp:
        # docs/design.md#security: a password crosses the network only inside TLS (loopback relays
        # excepted).
        loopback = self.host in {"localhost", "127.0.0.1", "::1"}
        if self.security == "none" and self.password is not None and not loopback:
            raise ValueError("security = 'none' would send the password in clear; use starttls")
        return self

    @property
    def resolved_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]


class MimecastAccount(_Model):
    base_url: str = "https://api.services.mimecast.com"
    client_id: str
    client_secret: SecretStr
    page_size: int = Field(default=500, ge=1, le=500)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _check_url(value)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"


ONEAPI_BASE = "https://api.zsapi.net/zia/api/v1"
ONEAPI_AUDIENCE = "https://api.zscaler.com"


class ZiaTenant(_Model):
    cloud: str | None = None
    api_base: str | None = None
    auth: Literal["oauth", "oneapi", "legacy"] = "oauth"
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None
    token_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    audience: str = ONEAPI_AUDIENCE
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    # The legacy JSESSIONID idles out after 5 minutes; renew a little before.
    session_idle: Duration = timedelta(minutes=4, seconds=30)
    #: Custom-URL slots threatshare never takes: a count, or a share of the quota
    #: (docs/design.md#capacity).
    quota_reserve: QuotaReserve = "5%"
    #: Percent of the tenant's quota in use that sends one warning e-mail (docs/design.md#alerts).
    quota_warn: int = Field(default=80, ge=1, le=100)

    @field_validator("api_base", "token_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("cloud")
    @classmethod
    def _cloud(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value):
            raise ValueError("must be a ZIA cloud name such as 'zscloud.net'")
        return value

    @property
    def resolved_api_base(self) -> str:
        """The ``…/api/v1`` base: explicit ``api_base``, else derived from auth and cloud."""
        if self.api_base:
            return self.api_base
        if self.auth == "oneapi":
            return ONEAPI_BASE
        host = "admin.zspreview.net" if self.cloud == "zspreview.net" else f"zsapi.{self.cloud}"
        return f"https://{host}/api/v1"

    @property
    def organisation(self) -> str:
        """The ZIA organisation this table names, for people (never a secret): many
        organisations share one API host (``zsapi.<cloud>``, ``api.zsapi.net``), so the host
        alone does not say whose tenant it is (docs/design.md#tenant-identity)."""
        host = urlsplit(self.resolved_api_base).netloc.lower()
        if self.auth == "oneapi":
            return urlsplit(self.token_url or "").netloc.lower()
        if self.auth == "legacy":
            key = self.api_key.get_secret_value() if self.api_key else ""
            return f"{host} api key {hashlib.sha256(key.encode()).hexdigest()[:8]}"
        org = self.org_id
        if org is not None:
            return f"{host} org {org}"
        # A scope that names no org (Entra's ``<app id uri>/.default``): the IdP and the client
        # stand for it, so two such tables share only when they are the same client.
        return f"{host} client {self.client_id} at {urlsplit(self.token_url or '').netloc}"

    @property
    def org_id(self) -> str | None:
        """The org id of an ``oauth`` scope ``<cloud>::<orgId>::<role>``; None without one."""
        if self.auth != "oauth" or not self.scope:
            return None
        for scope in self.scope.split():
            parts = scope.split("::")
            if len(parts) == 3 and parts[1].strip().isdigit():
                return parts[1].strip()
        return None

    @property
    def tenant_id(self) -> str:
        """Identity of the ZIA organisation, the key of everything kept per tenant in Redis
        (activation marks, quota readings, warnings, rate budgets): two ``[zia.*]`` tables that
        name one organisation share it, two organisations never do."""
        basis = f"{self.auth}|{self.organisation}"
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    @property
    def api_host_id(self) -> str:
        """What identified a tenant before the organisation did (a hash of the API host, or of
        the token URL for ``oneapi``). Kept only to find state written under it on upgrade and as
        the fingerprint's salt, so an upgrade does not count as a configuration change."""
        basis = self.token_url if self.auth == "oneapi" else self.resolved_api_base
        return hashlib.sha256((basis or "").encode()).hexdigest()[:16]


class Instance(_Model):
    mimecast: str
    zia: str
    category: str = Field(min_length=1, max_length=255)
    description: str = ""
    sources: list[Source] = Field(min_length=1)
    fetch_from: Duration = timedelta(hours=24)
    notify: Recipients = []
    enabled: bool = True
    allow: list[str] = []
    batch_size: int = Field(default=5000, ge=1, le=10000)
    #: An entry Mimecast has not reported for this long leaves the category; 0 = never
    #: (docs/design.md#expiry).
    expire_after: Duration = timedelta(days=30)
    #: Optional cap on the number of entries in this instance's category (docs/design.md#expiry).
    max_entries: int | None = Field(default=None, ge=1)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if not CATEGORY_PATTERN.fullmatch(value):
            raise ValueError("may use only letters, digits, space and _ - . ( )")
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        if "url_domains" in value and "malicious_urls" not in value:
            raise ValueError("url_domains requires malicious_urls")
        return list(dict.fromkeys(value))

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        problems = [problem for entry in value if (problem := allow_problem(entry))]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("expire_after")
    @classmethod
    def _expire_after(cls, value: timedelta) -> timedelta:
        if value != timedelta(0) and value < MIN_EXPIRE_AFTER:
            raise ValueError('must be "0" (never) or at least 1h')
        return value

    @field_validator("fetch_from")
    @classmethod
    def _fetch_from(cls, value: timedelta) -> timedelta:
        if value > MIMECAST_RETENTION or value <= timedelta(0):
            raise ValueError("must be more than 0 and at most 30d (Mimecast keeps 30 days)")
        return value


class Config(_Model):
    settings: Settings = Settings()
    smtp: Smtp | None = None
    mimecast: dict[str, MimecastAccount] = {}
    zia: dict[str, ZiaTenant] = {}
    instances: dict[str, Instance] = {}

    def enabled_instances(self, names: list[str] | None = None) -> list[str]:
        chosen = names or sorted(self.instances)
        return [n for n in chosen if n in self.instances and self.instances[n].enabled]

    def webhook_urls(self) -> list[str]:
        """Every webhook URL of ``notify`` and ``settings.admins``, each once."""
        lists = [self.settings.admins, *(inst.notify for inst in self.instances.values())]
        return list(dict.fromkeys(r for group in lists for r in group if is_webhook(r)))

    def secret_values(self) -> list[str]:
        """Every secret value of the configuration (and a Redis URL's password on its own),
        for scrubbing upstream text that echoes one (docs/design.md#security); never stored or
        shown."""
        tables: list[BaseModel] = [self.settings, *self.mimecast.values(), *self.zia.values()]
        if self.smtp is not None:
            tables.append(self.smtp)
        found = [
            value.get_secret_value()
            for table in tables
            for name in type(table).model_fields
            if isinstance(value := getattr(table, name), SecretStr)
        ]
        found.extend(self.webhook_urls())  # the URL is the credential
        if self.settings.redis_url is not None:
            password = urlsplit(self.settings.redis_url.get_secret_value()).password
            found.extend([password] if password else [])
        return found
