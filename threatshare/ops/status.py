"""What ``threatshare status`` shows (docs/design.md#command-line): one record per instance
and one per ZIA organisation (``tenants``: changes pending activation and since when), as JSON
or a table.

Exit code: 0 when no instance is ``retrying`` or ``halted``, 1 when one is ``retrying`` or a
tenant's changes have waited for activation longer than :data:`PENDING_TOO_LONG`, 2 when one is
``halted``. Nothing here reads a secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from threatshare.capacity import reserve_slots
from threatshare.config import Config, Instance, ZiaTenant
from threatshare.durations import format_duration
from threatshare.mimecast_clock import SKEW_WARNING
from threatshare.ops.stats import run_stats, tenant_stats
from threatshare.ops.table import render_rows
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.quota import QuotaRecord
from threatshare.state.store import Store
from threatshare.state.unblocked import UnblockList
from threatshare.timestamps import from_iso, to_iso

#: Staged changes that wait longer than this for activation protect nobody yet: a problem.
PENDING_TOO_LONG = timedelta(minutes=15)


def _epoch_iso(epoch: float | None) -> str | None:
    return None if epoch is None else to_iso(datetime.fromtimestamp(epoch, UTC))


def lifecycle_status(store: Store, name: str, inst: Instance) -> dict[str, Any]:
    """The ``lifecycle`` record of ``status`` (docs/design.md#command-line): expiry setting,
    oldest sighting, next expiry, and totals."""
    ledger = Ledger(store.redis)
    record = LifecycleRecord(store.redis, name).load()
    oldest = ledger.oldest_last_seen(name)
    never = inst.expire_after == timedelta(0)
    next_expiry = None if oldest is None or never else oldest + inst.expire_after.total_seconds()
    return {
        "expire_after": "0" if never else format_duration(inst.expire_after),
        "oldest_last_seen": _epoch_iso(oldest),
        "next_expiry": _epoch_iso(next_expiry),
        "expired": record.totals["expired"],
        "evicted": record.totals["evicted"],
        "removed_by_hand": record.totals["removed_by_hand"],
        "foreign": record.foreign,
        "unblocked": UnblockList(store.redis, name).count(),
        "last_reconciled": to_iso(record.last_reconciled),
    }


def _renamed_from(store: Store, name: str) -> dict[str, Any] | None:
    """The instance, no longer configured, whose category this one adopted (a rename)."""
    record = LifecycleRecord(store.redis, name).load()
    if record.renamed_from is None:
        return None
    return {"instance": record.renamed_from, "at": to_iso(record.renamed_at)}


def quota_status(store: Store, tenant: ZiaTenant) -> dict[str, Any] | None:
    """The tenant's quota after the last run's own changes, with the reserve it keeps."""
    quota = QuotaRecord(store.redis, tenant.tenant_id).latest()
    if quota is None:
        return None
    total = quota["used"] + quota["remaining"]
    return {**quota, "reserve": reserve_slots(tenant.quota_reserve, total)}


def instance_status(config: Config, store: Store, name: str) -> dict[str, Any]:
    """The record (docs/design.md#command-line) of one configured instance."""
    inst = config.instances[name]
    st = store.load(name)
    state = st.state if inst.enabled else "disabled"
    last_run = st.last_run.as_dict()
    last_run.pop("would_push", None)  # a dry run stores nothing
    tenant = config.zia[inst.zia]
    return {
        "name": name,
        "state": state,
        "enabled": inst.enabled,
        "bookmark": to_iso(st.bookmark),
        "last_success": to_iso(st.last_success),
        "last_attempt": to_iso(st.last_attempt),
        "last_error": st.last_error,
        "error_since": to_iso(st.error_since),
        "category": {
            "name": inst.category,
            "id": st.category_id,
            "entries": Ledger(store.redis).entry_count(name),
        },
        "last_run": last_run,
        "totals": st.totals,
        "run_stats": run_stats(store.redis, name),
        "quota": quota_status(store, tenant),
        "lifecycle": lifecycle_status(store, name, inst),
        "lost_span": st.lost_span,
        "clock_skew_seconds": st.clock_skew,
        "renamed_from": _renamed_from(store, name),
        "mimecast": inst.mimecast,
        "zia": inst.zia,
        "sources": list(inst.sources),
    }


def collect(config: Config, store: Store, name: str | None = None) -> list[dict[str, Any]]:
    names = [name] if name else sorted(config.instances)
    return [instance_status(config, store, n) for n in names]


def tenant_status(config: Config, store: Store, now: datetime) -> list[dict[str, Any]]:
    """One record per ZIA organisation (``id``: its tenant id), naming the ``[zia.*]`` tables
    of it (``zia``): changes pending activation and since when, ZIA's last refusal to activate,
    and its activations (docs/design.md#activation)."""
    tables: dict[str, list[str]] = {}
    for name in sorted(config.zia):
        tables.setdefault(config.zia[name].tenant_id, []).append(name)
    marks = ActivationMarks(store.redis)
    out = []
    for tenant_id, names in tables.items():
        since = marks.pending_since(tenant_id)
        pending = marks.unactivated_generation(tenant_id) is not None
        waited = None if since is None else max(0.0, (now - since).total_seconds())
        stats = tenant_stats(store.redis, tenant_id)
        out.append(
            {
                "id": tenant_id,
                "zia": names,
                "organisation": config.zia[names[0]].organisation,
                "instances": sorted(n for n, i in config.instances.items() if i.zia in names),
                "pending_activation": pending,
                "pending_activation_since": to_iso(since),
                "activation_overdue": waited is not None
                and waited > PENDING_TOO_LONG.total_seconds(),
                "activation_refused": marks.refusal(tenant_id),
                "activations": stats["activations"],
                "last_activation": stats["last_activation"],
            }
        )
    return out


def exit_code(records: list[dict[str, Any]], tenants: Sequence[dict[str, Any]] = ()) -> int:
    states = {r["state"] for r in records}
    if "halted" in states:
        return 2
    if "retrying" in states or any(t["activation_overdue"] for t in tenants):
        return 1
    return 0


def age_text(iso: str | None, now: datetime) -> str:
    """How long before ``now`` the ISO time ``iso`` was, for people: ``"5m ago"``, ``"never"``;
    ``"365d ahead"`` for a time later than ``now`` (a bookmark in the future)."""
    if not iso:
        return "never"
    when = from_iso(iso) or now
    if when - now > timedelta(minutes=1):  # a bookmark in the future: never shown as "0s"
        return format_duration(when - now) + " ahead"
    return format_duration(now - when) + " ago"


def render_json(records: list[dict[str, Any]], tenants: list[dict[str, Any]] | None = None) -> str:
    document: dict[str, Any] = {"instances": records}
    if tenants is not None:
        document["tenants"] = tenants
    return json.dumps(document, indent=2, sort_keys=True)


def tenant_lines(tenants: list[dict[str, Any]], now: datetime) -> list[str]:
    """The ``ZIA TENANT`` block of the table: pending activation and refusals, per org."""
    rows: list[tuple[str, ...]] = [("ZIA TENANT", "ORGANISATION", "PENDING ACTIVATION", "LAST")]
    details = []
    for t in tenants:
        pending = "no"
        if t["pending_activation"]:
            since = t["pending_activation_since"]
            pending = f"since {age_text(since, now)}" if since else "yes"
            if t["activation_overdue"]:
                pending += " (overdue)"
        last = age_text(t["last_activation"], now)
        rows.append((", ".join(t["zia"]), t["organisation"], pending, last))
        if t["activation_refused"]:
            refusal = t["activation_refused"]
            details.append(
                f"{', '.join(t['zia'])}: ZIA refused to activate ({refusal.get('code')}) at "
                f"{refusal.get('at')}: {refusal.get('message')}"
            )
    return [*render_rows(rows), *details]


def render_table(
    records: list[dict[str, Any]],
    now: datetime | None = None,
    tenants: list[dict[str, Any]] | None = None,
) -> str:
    now = now or datetime.now(UTC)
    header = ("INSTANCE", "STATE", "BOOKMARK AGE", "LAST SUCCESS", "ENTRIES", "LAST RUN", "QUOTA")
    rows: list[tuple[str, ...]] = [header]
    details: list[str] = []
    for r in records:
        run = r["last_run"]
        quota = r["quota"]
        rows.append(
            (
                r["name"],
                r["state"],
                age_text(r["bookmark"], now),
                age_text(r["last_success"], now),
                str(r["category"]["entries"]),
                f"+{run['pushed']} pulled {run['pulled']} skip {run['skipped']} "
                f"rej {run['rejected']}",
                "-" if not quota else f"{quota['used']} used / {quota['remaining']} left",
            )
        )
        if r["last_error"]:
            err = r["last_error"]
            details.append(
                f"{r['name']}: {err.get('code')} ({err.get('kind')}) since {r['error_since']}: "
                f"{err.get('message')}"
            )
        life = r["lifecycle"]
        if any(life[k] for k in ("expired", "evicted", "removed_by_hand", "foreign", "unblocked")):
            details.append(
                f"{r['name']}: expired {life['expired']}, evicted {life['evicted']}, removed by "
                f"hand {life['removed_by_hand']}, foreign {life['foreign']}, unblocked "
                f"{life['unblocked']} (threatshare unblock {r['name']} --list); next expiry "
                f"{life['next_expiry'] or 'none'}"
            )
        skew = r.get("clock_skew_seconds")
        if skew is not None and abs(skew) > SKEW_WARNING:
            direction = "ahead of" if skew > 0 else "behind"
            details.append(
                f"{r['name']}: the clock of the worker of the last run is {abs(skew)}s "
                f"{direction} Mimecast's (Mimecast's is used; fix the worker's time sync)"
            )
        if r.get("renamed_from"):
            renamed = r["renamed_from"]
            details.append(
                f"{r['name']}: adopted the category of {renamed['instance']}, an instance no "
                f"longer configured (renamed?), at {renamed['at']}"
            )
        if r["lost_span"]:
            span = r["lost_span"]
            details.append(
                f"{r['name']}: records from {span['from']} to {span['to']} were older than "
                "Mimecast keeps and could not be shared"
            )
        reasons = {**run["skipped_by_reason"], **run["rejected_by_reason"]}
        if reasons:
            listed = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
            details.append(f"{r['name']}: last run skipped/rejected: {listed}")
        if run["withdrawn"]:
            listed = ", ".join(f"{k}={v}" for k, v in sorted(run["withdrawn_by_reason"].items()))
            details.append(
                f"{r['name']}: last run withdrew {run['withdrawn']} entries today's rules would "
                f"not push: {listed}"
            )
    lines = [*render_rows(rows), *(["", *details] if details else [])]
    if tenants:
        lines += ["", *tenant_lines(tenants, now)]
    return "\n".join(lines)
