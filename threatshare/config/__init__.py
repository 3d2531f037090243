"""Configuration (docs/design.md#configuration): the models, loading them from TOML + secret files +
environment, and the warnings ``check`` prints.

Built once at the edge (the CLI, a worker process) and passed down; nothing reads it from a
global. ``from threatshare.config import Config, load`` is the whole interface most code needs.
"""

from threatshare.config.loading import load, resolve_path
from threatshare.config.models import (
    CATEGORY_PATTERN,
    EMAIL_PATTERN,
    ENV_PREFIX,
    MIMECAST_RETENTION,
    NAME_PATTERN,
    Config,
    Instance,
    MimecastAccount,
    Settings,
    Smtp,
    Source,
    ZiaTenant,
)
from threatshare.config.notices import redis_url_warning, warnings_for

__all__ = [
    "CATEGORY_PATTERN",
    "EMAIL_PATTERN",
    "ENV_PREFIX",
    "MIMECAST_RETENTION",
    "NAME_PATTERN",
    "Config",
    "Instance",
    "MimecastAccount",
    "Settings",
    "Smtp",
    "Source",
    "ZiaTenant",
    "load",
    "redis_url_warning",
    "resolve_path",
    "warnings_for",
]
