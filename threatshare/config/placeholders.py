"""Values that stand in for a real one: what ``threatshare init`` writes (``change-me``) and
what people type while filling a file in (``…``, ``<orgId>``, ``xxx``, ``TODO``). In a
credential they are configuration errors, not a token request that fails later with a
puzzling 401 (docs/design.md#configuration)."""

from __future__ import annotations

import re
from typing import Any

_WHOLE = re.compile(
    r"""\s*(?:
        (?:change|replace)[-_ ]?me\S* | todo | fixme | tbd | placeholder | secret | password
      | (?:\.\.\.|…)+ | x{3,} | \*{3,}
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
# A word in angle brackets (<orgId>, <client secret>) or braces of a template ({{ secret }}).
_INSIDE = re.compile(r"<[a-z][a-z0-9 _.-]*>|\{\{[^{}]*\}\}", re.IGNORECASE)

#: Table kind -> the keys that must hold a real credential or identifier.
CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {
    "smtp": ("username", "password"),
    "mimecast": ("client_id", "client_secret"),
    "zia": ("client_id", "client_secret", "scope", "token_url", "api_key", "username", "password"),
}

#: What ``threatshare init`` writes where a secret goes; a placeholder by the rule above.
INIT_PLACEHOLDER = "change-me"


def is_placeholder(value: object) -> bool:
    """True for a value that only stands in for the real one."""
    if not isinstance(value, str):
        return False
    return bool(_WHOLE.fullmatch(value) or _INSIDE.search(value))


def placeholder_problems(raw: dict[str, Any]) -> list[str]:
    """``path: …`` for every credential of the merged configuration that is a placeholder;
    the value itself is never repeated."""
    found: list[str] = []
    tables: list[tuple[str, str, Any]] = [("smtp", "smtp", raw.get("smtp"))]
    for kind in ("mimecast", "zia"):
        section = raw.get(kind)
        if isinstance(section, dict):
            tables.extend((kind, f"{kind}.{name}", table) for name, table in section.items())
    for kind, prefix, table in tables:
        if not isinstance(table, dict):
            continue
        for key in CREDENTIAL_KEYS[kind]:
            if is_placeholder(table.get(key)):
                found.append(f"{prefix}.{key}: is a placeholder, not a real value")
    return found
