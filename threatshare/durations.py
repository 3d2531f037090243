"""Durations written the way operators write them: ``"60s"``, ``"5m"``, ``"1h30m"``, ``"30d"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """A :class:`timedelta` from ``"90s"``, ``"1h30m"``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '60s', '5m', '24h' or '30d'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    if text.isdigit():
        return timedelta(seconds=int(text))
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError("must be a duration such as '60s', '5m', '24h' or '30d'")
    return timedelta(seconds=total)


def format_duration(value: timedelta, *, largest: int | None = None, sep: str = "") -> str:
    """The shortest exact spelling of ``value``: ``"5m"``, ``"1h30m"``, ``"45s"``; with
    ``largest`` only that many of the biggest units, for people (``"3d 4h"`` with ``sep=" "``).
    A negative duration reads as ``"0s"``."""
    seconds = max(0, int(value.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return sep.join(parts[:largest]) or "0s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
