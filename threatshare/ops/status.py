"""What ``threatshare status`` shows (S7): one record per instance, as JSON or a table.

Exit code: 0 when no instance is ``retrying`` or ``halted``, 1 when one is ``retrying``, 2 when
one is ``halted``. Nothing here reads a secret.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from threatshare.config import Config
from threatshare.durations import format_duration
from threatshare.ops.stats import run_stats
from threatshare.ops.table import render_rows
from threatshare.state.ledger import Ledger
from threatshare.state.store import Store
from threatshare.timestamps import from_iso, to_iso

EMPTY_RUN = {
    "pulled": 0,
    "pushed": 0,
    "rejected": 0,
    "skipped": 0,
    "removed": 0,
    "skipped_by_reason": {},
    "rejected_by_reason": {},
}


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
        "quota": store.quota(tenant.tenant_id),
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
    return "\n".join([*render_rows(rows), *(["", *details] if details else [])])
