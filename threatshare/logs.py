"""Logging set-up (docs/design.md#logs): structlog, JSON lines off a terminal, console output on
one.

Secrets cannot reach a log line: values of type ``SecretStr`` are masked, keys that name a
credential (``authorization``, ``password``, ``token``…) are masked whatever their value, and
any text that looks like a bearer token or a JWT is masked before rendering. stdlib logging
(RQ, httpx2) goes through the same processors.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretStr

from threatshare.scrub import MASK, mask_tokens

_SECRET_KEYS = re.compile(
    r"(authorization|password|passwd|secret|token|api_?key|cookie|jsessionid|credential)",
    re.IGNORECASE,
)
#: Libraries whose INFO lines are about their own workings, not the product's: httpx2 logs every
#: request line (the run logs counts instead), aiosmtpd (``mail.log``, the sandbox's SMTP
#: sink) every SMTP command, asyncio its event loop.
THIRD_PARTY = ("httpx2", "httpcore2", "httpx", "httpcore", "mail.log", "asyncio")
#: RQ's loggers, which it configures without propagation; ours are given our handler. Its INFO
#: lines ("Job OK", "result is kept for 20 seconds", each job's start) are about RQ's workings:
#: shown only when asked for (``third_party_level``), whatever level RQ sets on them.
LIBRARY_LOGGERS = ("rq", "rq.worker", "rq.scheduler", "rq.job")


class _QuietRq(logging.Filter):
    """Drops RQ's records below ``level`` (RQ sets its loggers' levels itself when a worker
    starts, so a logger level alone would not hold)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        is_rq = record.name == "rq" or record.name.startswith("rq.")
        return not is_rq or record.levelno >= self._level


# Counts and flags about secrets are fine to log; these keys are not secrets themselves.
_SAFE_KEYS = {"token_fetches", "token_url", "tokens", "token_auth"}


def _clean(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if key not in _SAFE_KEYS and _SECRET_KEYS.search(key):
        return MASK if value not in (None, "") else value
    if isinstance(value, str):
        return mask_tokens(value)
    if isinstance(value, dict):
        return {k: _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every secret-looking value before anything renders it."""
    for key in list(event_dict):
        event_dict[key] = _clean(key, event_dict[key])
    return event_dict


def _renderer(fmt: Literal["auto", "json", "console"], stream: TextIO) -> Any:
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    if console:
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


def configure(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    third_party_level: int = logging.WARNING,
) -> None:
    """Set up structlog and stdlib logging once, at the edge (CLI or worker start); the
    libraries of :data:`THIRD_PARTY` and RQ log at ``third_party_level`` only."""
    stream = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            _renderer(fmt, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_QuietRq(third_party_level))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in THIRD_PARTY:
        logging.getLogger(noisy).setLevel(third_party_level)
    # RQ configures its own loggers without propagation (rq 3); route them through ours.
    for name in LIBRARY_LOGGERS:
        rq_logger = logging.getLogger(name)
        rq_logger.handlers[:] = [handler]
        rq_logger.propagate = False
