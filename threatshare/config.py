"""Configuration (S1): models, loading from TOML + environment + secret files, validation.

Sources, lowest priority first: the TOML file, files in ``settings.secrets_dir`` (named like
the environment variables, lower-cased: ``threatshare_zia__prod__client_secret``), then
environment variables ``THREATSHARE_<SECTION>__<NAME>__<KEY>``. Every problem is collected and
reported at once, one line each, as ``dotted.path: message``; a secret's value is never echoed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from threatshare.durations import Duration
from threatshare.errors import ConfigError
from threatshare.http import is_loopback_host, url_problem
from threatshare.ops.listen import parse_listen

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CATEGORY_PATTERN = re.compile(r"^[A-Za-z0-9 _\-.()]+$")
# Deliberately plain: a local part and a dotted domain, no spaces, no CR/LF (header safety).
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
#: How far back Mimecast keeps its logs: the farthest a window (and fetch_from) can reach.
MIMECAST_RETENTION = timedelta(days=30)
MIN_INTERVAL = timedelta(seconds=10)
MIN_RECONCILE = timedelta(minutes=1)
MIN_EXPIRE_AFTER = timedelta(hours=1)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
ENV_PREFIX = "THREATSHARE_"
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
    admins: list[Email] = []
    protected_hosts: list[str] = []  # added to the built-in list shipped with the package
    # HOST:PORT of the operations endpoint inside `threatshare run` (S14); none when unset.
    listen: str | None = None
    #: How often each instance compares its record of entries with its category in ZIA (S13).
    reconcile_every: Duration = timedelta(hours=24)

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
        # S10: a password crosses the network only inside TLS (loopback relays excepted).
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
    #: Custom-URL slots threatshare never takes: a count, or a share of the quota (S13).
    quota_reserve: QuotaReserve = "5%"
    #: Percent of the tenant's quota in use that sends one warning e-mail (S6, S13).
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
    def tenant_id(self) -> str:
        """Identity of the ZIA org for fleet-wide limits: OneAPI shares one API host between
        all orgs, so there the token URL (the org's vanity domain) tells them apart."""
        basis = self.token_url if self.auth == "oneapi" else self.resolved_api_base
        return hashlib.sha256((basis or "").encode()).hexdigest()[:16]


class Instance(_Model):
    mimecast: str
    zia: str
    category: str = Field(min_length=1, max_length=255)
    description: str = ""
    sources: list[Source] = Field(min_length=1)
    fetch_from: Duration = timedelta(hours=24)
    notify: list[Email] = []
    enabled: bool = True
    allow: list[str] = []
    batch_size: int = Field(default=5000, ge=1, le=10000)
    #: An entry Mimecast has not reported for this long leaves the category; 0 = never (S13).
    expire_after: Duration = timedelta(days=30)
    #: Optional cap on the number of entries in this instance's category (S13).
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

    def secret_values(self) -> list[str]:
        """Every secret value of the configuration (and a Redis URL's password on its own),
        for scrubbing upstream text that echoes one (S10); never stored or shown."""
        tables: list[BaseModel] = [self.settings, *self.mimecast.values(), *self.zia.values()]
        if self.smtp is not None:
            tables.append(self.smtp)
        found = [
            value.get_secret_value()
            for table in tables
            for name in type(table).model_fields
            if isinstance(value := getattr(table, name), SecretStr)
        ]
        if self.settings.redis_url is not None:
            password = urlsplit(self.settings.redis_url.get_secret_value()).password
            found.extend([password] if password else [])
        return found


class _EnvShape(BaseSettings):
    """Only used to read environment variables and secret files into a nested dict."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        secrets_nested_delimiter="__",
        extra="ignore",
    )
    settings: dict[str, Any] = {}
    smtp: dict[str, Any] = {}
    mimecast: dict[str, dict[str, Any]] = {}
    zia: dict[str, dict[str, Any]] = {}
    instances: dict[str, dict[str, Any]] = {}


_AUTH_FIELDS = {
    "oauth": ("token_url", "client_id", "client_secret", "scope"),
    "oneapi": ("token_url", "client_id", "client_secret"),
    "legacy": ("api_key", "username", "password"),
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value not in ({}, None):
            out[key] = value
    return out


def resolve_path(cli_path: str | None) -> Path:
    """The configuration file: ``--config``, else ``$THREATSHARE_CONFIG``, else
    ``./threatshare.toml``."""
    return Path(cli_path or os.environ.get("THREATSHARE_CONFIG") or DEFAULT_CONFIG_PATH)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from None


def _environment() -> dict[str, Any]:
    return EnvSettingsSource(_EnvShape)()


def _secret_files(secrets_dir: Path) -> dict[str, Any]:
    return NestedSecretsSettingsSource(SecretsSettingsSource(_EnvShape, secrets_dir=secrets_dir))()


def _lower_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in data.items()}
    return data


def _structure_problems(raw: dict[str, Any]) -> list[str]:
    """Problems pydantic cannot see one model at a time: names, references, shared categories,
    and the fields each ``auth`` mode needs. Reads the raw data defensively."""
    problems: list[str] = []
    for section in ("mimecast", "zia", "instances"):
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for name in table:
            if not NAME_PATTERN.fullmatch(name):
                problems.append(f"{section}.{name}: name must match ^[a-z0-9][a-z0-9_-]{{0,62}}$")
    for name, tenant in (raw.get("zia") or {}).items():
        if not isinstance(tenant, dict):
            continue
        auth = tenant.get("auth", "oauth")
        for field in _AUTH_FIELDS.get(auth, ()):
            if tenant.get(field) in (None, ""):
                problems.append(f"zia.{name}.{field}: required when auth = {auth!r}")
        if auth != "oneapi" and not tenant.get("api_base") and not tenant.get("cloud"):
            problems.append(f"zia.{name}.cloud: required (or api_base) when auth = {auth!r}")
    categories: dict[tuple[str, str], str] = {}
    for name, inst in (raw.get("instances") or {}).items():
        if not isinstance(inst, dict):
            continue
        for ref in ("mimecast", "zia"):
            target = inst.get(ref)
            if isinstance(target, str) and target not in (raw.get(ref) or {}):
                problems.append(f"instances.{name}.{ref}: no [{ref}.{target}] table")
        category, zia = inst.get("category"), inst.get("zia")
        if isinstance(category, str) and isinstance(zia, str):
            key = (zia, category.strip().lower())
            if key in categories:
                problems.append(
                    f"instances.{name}.category: {category!r} is already used by instance "
                    f"{categories[key]!r} on ZIA tenant {zia!r}"
                )
            else:
                categories[key] = name
    return problems


def _format(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    # Never error["input"]: it may be a secret.
    return f"{path}: {message}"


def load(path: Path, environ_overrides: bool = True) -> Config:
    """Read, merge and validate the configuration at ``path``; raise :class:`ConfigError` with
    every problem found."""
    raw = _read_toml(path)
    env: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    if environ_overrides:
        env = _environment()
    settings_raw = _merge(raw.get("settings") or {}, env.get("settings") or {})
    secrets_dir = settings_raw.get("secrets_dir")
    if secrets_dir:
        secrets_path = Path(str(secrets_dir)).expanduser()
        if secrets_path.is_dir():
            secrets = _secret_files(secrets_path)
        else:
            problems.append("settings.secrets_dir: directory does not exist")
    merged = _merge(_merge(raw, _lower_keys(secrets)), _lower_keys(env))
    problems.extend(_structure_problems(merged))
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_format(e) for e in exc.errors(include_url=False, include_input=False))
        config = None
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert config is not None
    return config


def redis_url_warning(url: SecretStr | None) -> str | None:
    """A warning when a Redis password would cross the network in clear text: plain
    ``redis://`` to a host that is not loopback (S10)."""
    if url is None:
        return None
    parsed = urlsplit(url.get_secret_value())
    if parsed.scheme != "redis" or not parsed.password:
        return None
    if parsed.hostname is None or is_loopback_host(parsed.hostname):
        return None
    return (
        f"settings.redis_url: the Redis password goes to {parsed.hostname} over plain "
        "redis://; use rediss:// (TLS) off this machine"
    )


def warnings_for(path: Path, config: Config) -> list[str]:
    """Things that are allowed but an operator should hear about (``check`` prints them)."""
    out: list[str] = []
    if config.smtp is None:
        out.append("smtp: not configured; alerts will only be logged")
    has_secret = any(t.client_secret or t.password or t.api_key for t in config.zia.values()) or (
        bool(config.mimecast) or (config.smtp is not None and config.smtp.password is not None)
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if has_secret and mode & stat.S_IROTH:
        out.append(f"{path}: holds secrets and is world-readable; chmod o-r it")
    if problem := redis_url_warning(config.settings.redis_url):
        out.append(problem)
    for name, inst in config.instances.items():
        if not inst.notify and not config.settings.admins:
            out.append(f"instances.{name}.notify: nobody will be e-mailed when it halts")
        if inst.expire_after == timedelta(0) and inst.max_entries is None:
            out.append(
                f"instances.{name}.expire_after: 0 (never) without max_entries: the category "
                "only grows, until the tenant's quota_reserve stops it"
            )
    return out
