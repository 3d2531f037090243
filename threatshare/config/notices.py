"""What ``check`` warns about: a valid configuration an operator should still hear of."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    SecretStr,
)

from threatshare.config.models import Config
from threatshare.http import is_loopback_host


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
