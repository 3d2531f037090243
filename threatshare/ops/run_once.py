"""``threatshare run --once``: every enabled instance once, then one activation per changed
tenant, then the alert outbox; a summary on stdout. Exit 0 when every instance ended ``ok``."""

from __future__ import annotations

import redis

from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.ops.table import render_rows
from threatshare.ops.terminal_progress import progress_for
from threatshare.runtime import Runtime
from threatshare.sync import RunResult, sync_all
from threatshare.zia.activation import activate_pending


def summary(results: list[RunResult]) -> str:
    rows = [("INSTANCE", "OUTCOME", "PULLED", "PUSHED", "SKIPPED", "REJECTED", "ERROR")]
    for r in results:
        c = r.counters
        error = f"{r.error['code']}: {r.error['message']}" if r.error else ""
        rows.append(
            (
                r.instance,
                r.outcome,
                str(c.get("pulled", 0)),
                str(c.get("pushed", c.get("would_push", 0))),
                str(c.get("skipped", 0)),
                str(c.get("rejected", 0)),
                error[:120],
            )
        )
    return "\n".join([*render_rows(rows), *_reasons(results)])


def _reasons(results: list[RunResult]) -> list[str]:
    """Per instance, what was skipped, rejected or withdrawn and why (one line each)."""
    lines = []
    for r in results:
        c = r.counters
        for label, key in (
            ("skipped", "skipped_by_reason"),
            ("rejected", "rejected_by_reason"),
            ("withdrawn", "withdrawn_by_reason"),
        ):
            reasons = c.get(key) or {}
            if reasons:
                listed = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
                lines.append(f"{r.instance}: {label} {listed}")
    return lines


def dry_run_report(results: list[RunResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.instance}: would push {r.counters.get('would_push', 0)} entries")
        lines.extend(f"  {entry}" for entry in r.would_push)
    return "\n".join(lines)


def run_once(
    config: Config, client: redis.Redis, names: list[str] | None, *, dry_run: bool = False
) -> int:
    rt = Runtime(config, client, progress=progress_for())
    try:
        results = sync_all(rt, config.enabled_instances(names), dry_run=dry_run)
        if dry_run:
            print(dry_run_report(results))
            print(summary(results))
            return 0
        activations = activate_pending(rt)
    finally:
        rt.close()
    Outbox(client).deliver(config.smtp)
    print(summary(results))
    for activation in activations:
        if activation.error:
            print(
                f"ZIA tenant {activation.tenant}: activation failed "
                f"({activation.error['code']}); it is retried by the next run"
            )
        elif not activation.activated:
            print(f"ZIA tenant {activation.tenant}: another process is activating it")
    return 0 if results and all(r.outcome == "ok" for r in results) else 1
