"""Timestamps as threatshare writes them: ISO 8601 in UTC with a ``Z`` (Redis, status, e-mail)."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_iso(value: str | bytes | None) -> datetime | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
