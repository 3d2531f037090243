"""Reading the totals the operations endpoint exports (docs/design.md#operations-endpoint) beside
the state of docs/design.md#state-in-redis.

They are written where things happen, each in a round trip the code makes anyway: a run's
outcome, error code and duration with its counters (:meth:`Store.record_run`), an activation
with its tenant's mark (:meth:`Store.record_activation`), a 429 by the rate limiter that saw it.
"""

from __future__ import annotations

from typing import Any

import redis

from threatshare import keys


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(key).items()}


def run_stats(client: redis.Redis, name: str) -> dict[str, Any]:
    """An instance's runs by outcome, errors by code, and the last run's duration (seconds)."""
    raw = _hash(client, keys.instance_run_stats(name))
    duration = raw.pop("last_duration_seconds", None)
    grouped: dict[str, dict[str, int]] = {"runs": {}, "errors": {}}
    for field, value in raw.items():
        group, _, label = field.partition(":")
        if group in grouped and label:
            grouped[group][label] = int(value)
    return {
        "runs_by_outcome": grouped["runs"],
        "errors_by_code": grouped["errors"],
        "last_duration_seconds": None if duration is None else float(duration),
    }


def tenant_stats(client: redis.Redis, tenant_id: str) -> dict[str, Any]:
    """A ZIA tenant's activations, 429 answers, and the time of its last activation."""
    raw = _hash(client, keys.tenant_stats(tenant_id))
    return {
        "activations": int(raw.get("activations", 0)),
        "rate_limited": int(raw.get("rate_limited", 0)),
        "last_activation": raw.get("last_activation") or None,
    }
