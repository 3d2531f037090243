"""Loading the configuration (docs/design.md#configuration): TOML file, secret files and
environment, merged and validated.

Sources, lowest priority first: the TOML file, files in ``settings.secrets_dir`` (named like
the environment variables, lower-cased: ``threatshare_zia__prod__client_secret``), then
environment variables ``THREATSHARE_<SECTION>__<NAME>__<KEY>``. Every problem is collected and
reported at once, one line each, as ``dotted.path: message``; a secret's value is never echoed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from threatshare.config.models import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    NAME_PATTERN,
    Config,
    Instance,
    MimecastAccount,
    Settings,
    Smtp,
    ZiaTenant,
)
from threatshare.config.placeholders import placeholder_problems
from threatshare.errors import ConfigError


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


_TABLES: dict[str, type[BaseModel]] = {"settings": Settings, "smtp": Smtp}
_NAMED_TABLES: dict[str, type[BaseModel]] = {
    "mimecast": MimecastAccount,
    "zia": ZiaTenant,
    "instances": Instance,
}


def _known_keys(parent: tuple[str, ...]) -> list[str]:
    """The keys the table at ``parent`` accepts."""
    if not parent:
        return list(Config.model_fields)
    if len(parent) == 1 and parent[0] in _TABLES:
        return list(_TABLES[parent[0]].model_fields)
    if len(parent) == 2 and parent[0] in _NAMED_TABLES:
        return list(_NAMED_TABLES[parent[0]].model_fields)
    return []


def _format(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        loc = tuple(str(part) for part in error["loc"])
        close = difflib.get_close_matches(loc[-1], _known_keys(loc[:-1]), n=1, cutoff=0.6)
        message = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
    # Never error["input"]: it may be a secret.
    return f"{path}: {message}"


def _leaves(data: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths of ``data``'s values (not of its tables)."""
    if not isinstance(data, dict):
        return {prefix}
    found: set[tuple[str, ...]] = set()
    for key, value in data.items():
        found |= _leaves(value, (*prefix, str(key).lower()))
    return found


class _Origins:
    """Where each overridden value came from, so that a problem names the environment variable
    or the secret file that holds it, not the TOML file that does not."""

    def __init__(self, env: dict[str, Any], secrets: dict[str, Any], secrets_dir: Path) -> None:
        self._env = _leaves(env)
        self._secrets = _leaves(secrets)
        self._secrets_dir = secrets_dir

    def name(self, problem: str) -> str:
        path, sep, message = problem.partition(": ")
        loc = tuple(path.lower().split("."))
        prefixes = [loc[:n] for n in range(len(loc), 0, -1)]
        for leaf in prefixes:
            if leaf in self._env:
                return f"{ENV_PREFIX}{'__'.join(leaf).upper()}{sep}{message}"
        for leaf in prefixes:
            if leaf in self._secrets:
                file = self._secrets_dir / f"{ENV_PREFIX.lower()}{'__'.join(leaf)}"
                return f"{file}{sep}{message}"
        return problem


def load(path: Path, environ_overrides: bool = True) -> Config:
    """Read, merge and validate the configuration at ``path``; raise :class:`ConfigError` with
    every problem found, each named after where its value came from (the TOML file's dotted
    path, the environment variable, or the secret file)."""
    raw = _read_toml(path)
    env: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    if environ_overrides:
        env = _lower_keys(_environment())
    settings_raw = _merge(raw.get("settings") or {}, env.get("settings") or {})
    secrets_dir = settings_raw.get("secrets_dir")
    secrets_path = Path(str(secrets_dir)).expanduser() if secrets_dir else Path()
    if secrets_dir:
        if secrets_path.is_dir():
            secrets = _lower_keys(_secret_files(secrets_path))
        else:
            problems.append("settings.secrets_dir: directory does not exist")
    merged = _merge(_merge(raw, secrets), env)
    problems.extend(_structure_problems(merged))
    placeholders = placeholder_problems(merged)
    problems.extend(placeholders)
    named = {problem.partition(": ")[0] for problem in placeholders}
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            line = _format(error)
            if line.partition(": ")[0] not in named:  # a placeholder says it better
                problems.append(line)
        config = None
    if problems:
        origins = _Origins(env, secrets, secrets_path)
        raise ConfigError(list(dict.fromkeys(origins.name(p) for p in problems)))
    assert config is not None
    return config
