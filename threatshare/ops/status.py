"""What ``threatshare status`` shows (S7): one record per instance, as JSON or a table.

Exit code: 0 when no instance is ``retrying`` or ``halted``, 1 when one is ``retrying``, 2 when
one is ``halted``. Nothing here reads a secret.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from threatshare.capacity import reserve_slots
from threatshare.config import Config, Instance, ZiaTenant
from threatshare.durations import format_duration
from threatshare.ops.stats import run_stats
from threatshare.ops.table import render_rows
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.quota import QuotaRecord
from threatshare.state.store import Store
from threatshare.state.unblocked import UnblockList
from threatshare.timestamps import from_iso, to_iso

EMPTY_RUN = {
    "pulled": 0,
    "pushed": 0,
    "rejected": 0,
    "skipped": 0,
    "removed": 0,
    "skipped_by_reason": {},
    "rejected_by_reason": {},
    "withdrawn": 0,
    "withdrawn_by_reason": {},
}


def _epoch_iso(epoch: float | None) -> str | None:
    return None if epoch is None else to_iso(datetime.fromtimestamp(epoch, UTC))


def lifecycle_status(store: Store, name: str, inst: Instance) -> dict[str, Any]:
    """S7's ``lifecycle`` record: expiry setting, oldest sighting, next expiry, and totals."""
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


def quota_status(store: Store, tenant: ZiaTenant) -> dict[str, Any] | None:
    """The tenant's quota after the last run's own changes, with the reserve it keeps."""
    quota = QuotaRecord(store.redis, tenant.tenant_id).latest()
    if quota is None:
        return None
    total = quota["used"] + quota["remaining"]
    return {**quota, "reserve": reserve_slots(tenant.quota_reserve, total)}


def instance_status(config: Config, store: Store, name: str) -> dict[str, Any]:
    """The S7 record of one configured instance."""
    inst = config.instances[name]
    st = store.load(name)
    state = st.state if inst.enabled else "disabled"
    last_run = {**EMPTY_RUN, **{k: v for k, v in st.last_run.items() if k in EMPTY_RUN}}
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
        "mimecast": inst.mimecast,
        "zia": inst.zia,
        "sources": list(inst.sources),
    }


def collect(config: Config, store: Store, name: str | None = None) -> list[dict[str, Any]]:
    names = [name] if name else sorted(config.instances)
    return [instance_status(config, store, n) for n in names]


def exit_code(records: list[dict[str, Any]]) -> int:
    states = {r["state"] for r in records}
    if "halted" in states:
        return 2
    if "retrying" in states:
        return 1
    return 0


def age_text(iso: str | None, now: datetime) -> str:
    """How long before ``now`` the ISO time ``iso`` was, for people: ``"5m ago"``, ``"never"``."""
    if not iso:
        return "never"
    when = from_iso(iso) or now
    return format_duration(now - when) + " ago"


def render_json(records: list[dict[str, Any]]) -> str:
    return json.dumps({"instances": records}, indent=2, sort_keys=True)


def render_table(records: list[dict[str, Any]], now: datetime | None = None) -> str:
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
    return "\n".join([*render_rows(rows), *(["", *details] if details else [])])
