"""``threatshare check --live``: a token and one read call against each Mimecast account and
ZIA tenant, each reported on one line (the reference product's "Verify")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import redis

from threatshare.config import Config
from threatshare.errors import ThreatshareError
from threatshare.http import Deadline, RetryPolicy, interactive
from threatshare.runtime import Runtime

CHECK_DEADLINE = 30.0
# One quick retry at most: an operator is waiting for the answer.
CHECK_POLICY = RetryPolicy(max_attempts=2, initial_wait=0.5, max_wait=2.0)


@dataclass
class LiveCheck:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def record(self, what: str, outcome: str | ThreatshareError) -> None:
        if isinstance(outcome, ThreatshareError):
            self.ok = False
            self.lines.append(f"FAIL {what}: {outcome.code} ({outcome.kind}): {outcome.message}")
        else:
            self.lines.append(f"ok   {what}: {outcome}")


class _Checkable(Protocol):
    def check(self) -> str: ...

    def close(self) -> None: ...


def _probe(result: LiveCheck, what: str, client: _Checkable) -> None:
    try:
        result.record(what, client.check())
    except ThreatshareError as exc:
        result.record(what, exc)
    finally:
        client.close()


def check_live(config: Config, client: redis.Redis) -> LiveCheck:
    """One line per account and tenant; ZIA calls go through the fleet's rate limiter too."""
    result = LiveCheck()
    rt = Runtime(config, client, policy=interactive(CHECK_POLICY))
    try:
        for name in sorted(config.mimecast):
            _probe(
                result, f"mimecast.{name}", rt.mimecast_client(name, Deadline.after(CHECK_DEADLINE))
            )
        for name in sorted(config.zia):
            _probe(result, f"zia.{name}", rt.zia_client(name, Deadline.after(CHECK_DEADLINE)))
    finally:
        rt.close()
    return result
