"""``threatshare check --live``: a token and one read call against each Mimecast account and
ZIA tenant, each reported on one line (the reference product's "Verify"); and, from one more
read per tenant, a warning for each category threatshare manages for an instance that is no
longer configured (a rename, or an instance removed: docs/design.md#reconciliation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import redis

from threatshare.config import Config
from threatshare.errors import ThreatshareError
from threatshare.http import Deadline, RetryPolicy, interactive
from threatshare.runtime import Runtime
from threatshare.zia.client import ZiaClient

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

    def warn(self, what: str, text: str) -> None:
        """A finding that does not fail the check."""
        self.lines.append(f"warn {what}: {text}")


class _Checkable(Protocol):
    def check(self) -> str: ...

    def close(self) -> None: ...


def _probe(
    result: LiveCheck, what: str, client: _Checkable, then: Callable[[], None] = lambda: None
) -> None:
    try:
        result.record(what, client.check())
        then()
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
            zia = rt.zia_client(name, Deadline.after(CHECK_DEADLINE))
            _probe(result, f"zia.{name}", zia, partial(_stranded, result, config, name, zia))
    finally:
        rt.close()
    return result


def _stranded(result: LiveCheck, config: Config, tenant: str, client: ZiaClient) -> None:
    """Warn of each category of tenant ``tenant`` that names an instance no longer configured."""
    for category, instance in client.managed_categories():
        if instance in config.instances:
            continue
        heirs = [
            n
            for n, inst in sorted(config.instances.items())
            if inst.zia == tenant and inst.category.casefold() == category.casefold()
        ]
        head = f"category {category!r} names instance {instance!r}, which is not configured"
        if heirs:
            text = f"{head}; instance {heirs[0]!r}, configured with it, adopts its entries"
        else:
            text = (
                f"{head} and no instance uses it: its entries stay blocked and never expire "
                "(configure an instance with it, or delete it in ZIA)"
            )
        result.warn(f"zia.{tenant}", text)
