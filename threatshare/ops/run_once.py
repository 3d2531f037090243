"""``threatshare run --once``: every enabled instance once, then one activation per changed
tenant, then the alert outbox; a summary on stdout. Exit 0 when every instance ended ``ok``."""

from __future__ import annotations

import redis

from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.http import RetryPolicy
from threatshare.ops.table import render_rows
from threatshare.ops.terminal_progress import logs_above_bars, progress_for
from threatshare.runtime import Runtime
from threatshare.sync import RunResult, halt_refused_tenants, sync_all
from threatshare.sync.activation import activate_pending


def summary(results: list[RunResult]) -> str:
    rows = [("INSTANCE", "OUTCOME", "PULLED", "PUSHED", "SKIPPED", "REJECTED", "ERROR")]
    for r in results:
        c = r.counters
        error = f"{r.error['code']}: {r.error['message']}" if r.error else ""
        rows.append(
            (
                r.instance,
                r.outcome,
                str(c.pulled),
                str(c.pushed if c.would_push is None else c.would_push),
                str(c.skipped),
                str(c.rejected),
                error[:120],
            )
        )
    return "\n".join([*render_rows(rows), *_reasons(results)])


def _reasons(results: list[RunResult]) -> list[str]:
    """Per instance, what was skipped, rejected or withdrawn and why (one line each)."""
    lines = []
    for r in results:
        c = r.counters
        for label, reasons in (
            ("skipped", c.skipped_by_reason),
            ("rejected", c.rejected_by_reason),
            ("withdrawn", c.withdrawn_by_reason),
        ):
            if reasons:
                listed = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
                lines.append(f"{r.instance}: {label} {listed}")
    return lines


def dry_run_report(results: list[RunResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.instance}: would push {r.counters.would_push or 0} entries")
        lines.extend(f"  {entry}" for entry in r.would_push)
    return "\n".join(lines)


def run_once(
    config: Config,
    client: redis.Redis,
    names: list[str] | None,
    *,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
) -> int:
    """Sync ``names`` (every enabled instance when None) once; ``policy``: how temporary
    errors are retried (the command line's gives up on an unreachable host within 30 s)."""
    progress = progress_for()
    rt = Runtime(config, client, policy=policy or RetryPolicy(), progress=progress)
    try:
        with logs_above_bars(progress):
            results = sync_all(rt, config.enabled_instances(names), dry_run=dry_run)
            activations = [] if dry_run else activate_pending(rt)
            halted = [] if dry_run else halt_refused_tenants(rt, activations)
    finally:
        rt.close()
    if dry_run:
        print(dry_run_report(results))
        print(summary(results))
        return 0
    Outbox(client).deliver_for(config)
    print(summary(results))
    for activation in activations:
        code = (activation.error or {}).get("code")
        if code == "activation_refused":
            print(
                f"ZIA tenant {activation.zia}: ZIA refused the activation; nothing staged is "
                "enforced, and every instance of the tenant is halted"
            )
        elif activation.error:
            print(
                f"ZIA tenant {activation.zia}: activation failed ({code}); it is retried by the "
                "next run"
            )
        elif not activation.activated:
            print(f"ZIA tenant {activation.zia}: another process is activating it")
    if halted:
        print(f"halted: {', '.join(halted)} (activation_refused)")
    return 0 if results and all(r.outcome == "ok" for r in results) and not halted else 1
