"""The warnings a run's lifecycle may queue (docs/design.md#alerts): the tenant's quota crossing
``quota_warn``, and the instance at capacity. One e-mail per incident, through the outbox and
its fleet-wide marks; never a halt.

The quota warning's incident is the tenant's crossing number, so every worker that sees the
same crossing names it the same way; it is re-armed when use falls 5 points below the level.
The capacity incident starts with the first run that left threats out and ends with the first
run whose new threats all fitted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from threatshare.alerts.message import Alert, recipients_for
from threatshare.alerts.outbox import Outbox
from threatshare.capacity import (
    daily_rate,
    fill_forecast,
    percent_used,
    quota_warning,
    reserve_slots,
)
from threatshare.config import Config
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.quota import QuotaRecord
from threatshare.sync.lifecycle import LifecycleReport
from threatshare.timestamps import to_iso
from threatshare.zia.client import ZiaClient

log = structlog.get_logger(__name__)


def tenant_recipients(config: Config, zia: str) -> tuple[str, ...]:
    """The admins and the ``notify`` of every instance on the ZIA organisation of the table
    ``zia``, whichever table names it (its quota is theirs too)."""
    tenant_id = config.zia[zia].tenant_id
    out: list[str] = []
    for name in sorted(config.instances):
        if config.zia[config.instances[name].zia].tenant_id == tenant_id:
            out.extend(recipients_for(config, name))
    return tuple(dict.fromkeys(out)) or tuple(config.settings.admins)


def _base(config: Config, name: str, kind: str, recipients: tuple[str, ...]) -> dict[str, Any]:
    inst = config.instances[name]
    return {
        "kind": kind,
        "instance": name,
        "category": inst.category,
        "zia_tenant": inst.zia,
        "mimecast_account": inst.mimecast,
        "code": None,
        "message": None,
        "since": None,
        "bookmark": None,
        "recipients": recipients,
    }


def warn_about_quota(
    config: Config,
    name: str,
    outbox: Outbox,
    quota_record: QuotaRecord,
    client: ZiaClient,
    now: datetime,
) -> bool:
    """After a run that read the quota: one warning per crossing of ``quota_warn``."""
    latest = quota_record.latest()
    if latest is None:
        return False
    tenant = config.zia[config.instances[name].zia]
    used, remaining = latest["used"], latest["remaining"]
    percent = percent_used(used, remaining)
    send, state = quota_warning(percent, tenant.quota_warn, quota_record.warning_state())
    quota_record.set_warning_state(state)
    if not send:
        return False
    total = used + remaining
    history = quota_record.history()
    figures = {
        "used": used,
        "quota": total,
        "percent": int(percent),
        "warn_at": tenant.quota_warn,
        "reserve": reserve_slots(tenant.quota_reserve, total),
        "rate_per_day": int(daily_rate(history, now) or 0),
    }
    inst = config.instances[name]
    alert = Alert(
        **_base(config, name, "quota_warning", tenant_recipients(config, inst.zia)),
        figures=figures,
        shares=tuple(client.category_sizes()),
        forecast=fill_forecast(history, total, now),
        at=now,
    )
    log.warning("quota.warning", percent=int(percent), used=used, quota=total)
    return outbox.put(alert, f"crossing-{state.crossings}")


def report_capacity(
    config: Config,
    name: str,
    outbox: Outbox,
    record: LifecycleRecord,
    outcome: LifecycleReport,
    entries: int,
    now: datetime,
) -> bool:
    """One "at capacity" e-mail per incident; the incident ends when new threats fit again."""
    if outcome.capacity is None:
        return False  # nothing was pushed: nothing to say either way
    if not outcome.left_out:
        record.end_capacity_incident()
        return False
    since = record.start_capacity_incident(now)
    inst = config.instances[name]
    alert = Alert(
        **_base(config, name, "at_capacity", recipients_for(config, name)),
        figures={
            "left_out": outcome.left_out,
            "capacity": outcome.capacity,
            "entries": entries,
            "evicted": outcome.evicted,
            "reserve": outcome.reserve,
            "max_entries": inst.max_entries or 0,
        },
        at=now,
    )
    log.warning("lifecycle.at_capacity", left_out=outcome.left_out, capacity=outcome.capacity)
    return outbox.put(alert, str(to_iso(since)))
