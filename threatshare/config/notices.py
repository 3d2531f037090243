"""What ``check`` warns about: a valid configuration an operator should still hear of."""

from __future__ import annotations

import stat
import tomllib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    SecretStr,
)

from threatshare.config.models import ENV_PREFIX, Config
from threatshare.http import is_loopback_host


def redis_url_warning(url: SecretStr | None) -> str | None:
    """A warning when a Redis password would cross the network in clear text: plain
    ``redis://`` to a host that is not loopback (docs/design.md#security)."""
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
    if _file_holds_secrets(path) and _world_readable(path):
        out.append(f"{path}: holds secrets and is world-readable; chmod o-r it")
    out.extend(_readable_secret_files(config))
    if problem := redis_url_warning(config.settings.redis_url):
        out.append(problem)
    out.extend(shared_organisations(config))
    for name, inst in config.instances.items():
        if not inst.notify and not config.settings.admins:
            out.append(f"instances.{name}.notify: nobody will be e-mailed when it halts")
        if inst.expire_after == timedelta(0) and inst.max_entries is None:
            out.append(
                f"instances.{name}.expire_after: 0 (never) without max_entries: the category "
                "only grows, until the tenant's quota_reserve stops it"
            )
    return out


#: Keys whose value is a secret, by table kind (a Redis URL only when it carries a password).
_SECRET_KEYS = {
    "smtp": ("password",),
    "mimecast": ("client_secret",),
    "zia": ("client_secret", "api_key", "password"),
}


def _file_holds_secrets(path: Path) -> bool:
    """Whether the TOML file itself holds a secret value (not merely a table that needs one,
    its secret coming from the environment or a secret file)."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return False
    redis_url = (raw.get("settings") or {}).get("redis_url")
    if isinstance(redis_url, str) and urlsplit(redis_url).password:
        return True
    tables: list[tuple[str, object]] = [("smtp", raw.get("smtp"))]
    for kind in ("mimecast", "zia"):
        named = raw.get(kind)
        if isinstance(named, dict):
            tables.extend((kind, table) for table in named.values())
    return any(
        isinstance(table, dict) and any(table.get(key) for key in _SECRET_KEYS[kind])
        for kind, table in tables
    )


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _readable_secret_files(config: Config) -> list[str]:
    """A warning for each secret file other users can read: the file is readable by all and
    its directory lets them in."""
    directory = config.settings.secrets_dir
    if directory is None:
        return []
    directory = directory.expanduser()
    try:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return []
        prefix = ENV_PREFIX.lower()
        files = sorted(p for p in directory.iterdir() if p.name.lower().startswith(prefix))
    except OSError:
        return []
    return [
        f"{file}: a secret file readable by every user; chmod o-r it"
        for file in files
        if file.is_file() and _world_readable(file)
    ]


def shared_organisations(config: Config) -> list[str]:
    """One line per ZIA organisation that several ``[zia.*]`` tables name: allowed (say, two
    API roles of one org), but they share one activation, quota, warnings and rate budget."""
    tables: dict[str, list[str]] = {}
    for name in sorted(config.zia):
        tables.setdefault(config.zia[name].tenant_id, []).append(name)
    out = []
    for names in tables.values():
        if len(names) > 1:
            listed = ", ".join(f"zia.{n}" for n in names)
            out.append(
                f"{listed}: name one ZIA organisation ({config.zia[names[0]].organisation}); "
                "they share its activations, quota readings, warnings and rate budget"
            )
    return out
