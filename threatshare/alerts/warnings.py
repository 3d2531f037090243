"""The lifecycle warnings as an operator reads them (docs/design.md#capacity): a ZIA tenant's
quota crossing ``quota_warn``, with each category's share and a fill forecast, and an instance
at capacity, with the count left out and what to change. Names of categories come from ZIA and
were cleaned when the :class:`~threatshare.alerts.message.Alert` was made.
"""

from __future__ import annotations

from datetime import datetime

from threatshare.alerts.message import Alert, facts, paragraph, row, span, when


def _count(value: int) -> str:
    return f"{value:,}"


def quota_warning_body(alert: Alert, now: datetime) -> str:
    f = alert.figures
    used, total = f.get("used", 0), f.get("quota", 0)
    warn_at = f.get("warn_at", 0)
    lines = [
        paragraph(
            f"ZIA tenant {alert.zia_tenant} has {_count(used)} of its {_count(total)} custom "
            f"URLs in use ({f.get('percent', 0)}%), past the warning level of {warn_at}% "
            "(quota_warn). The quota is shared by every custom category of the tenant."
        ),
        "",
        paragraph(
            f"threatshare never takes the last {_count(f.get('reserve', 0))} (quota_reserve): "
            "when its instances run out of room they evict their own least recently seen "
            "entries instead."
        ),
        "",
        "Share of the quota by category:",
    ]
    width = max((len(name) for name, _ in alert.shares), default=0)
    for name, count in alert.shares:
        share = 100 * count / total if total else 0
        lines.append(f"  {name:<{width}}  {_count(count):>9}  ({share:.0f}%)")
    lines.append("")
    rate = f.get("rate_per_day")
    if alert.forecast is not None and rate:
        lines.append(
            paragraph(
                f"At the current rate (+{_count(rate)} a day over the last 7 days) the quota "
                f"fills around {when(alert.forecast)} (in {span(alert.forecast - now)})."
            )
        )
    else:
        lines.append("Use is not growing at the moment: no date is forecast for it to fill.")
    lines += [
        "",
        "What to do:",
        paragraph(
            "lower expire_after or set max_entries on the instances of this tenant, remove "
            "entries from other custom categories, or buy more quota (add-ons of 50,000 URLs).",
            "  ",
        ),
        "",
        paragraph(
            f"This warning is sent again only after use falls below {warn_at - 5}% and crosses "
            f"{warn_at}% once more."
        ),
    ]
    return "\n".join(lines) + "\n"


def at_capacity_body(alert: Alert, now: datetime) -> str:
    f = alert.figures
    cap_note = f"at most max_entries {_count(f['max_entries'])}" if f.get("max_entries") else ""
    lines = [
        paragraph(
            f"The instance {alert.instance} could not share {_count(f.get('left_out', 0))} "
            "new threats with ZIA for lack of room. It keeps running: the newest threats win, "
            "and what it left out are the least recently seen (counted as `capacity` in "
            "`threatshare status`)."
        ),
        "",
        *facts(alert),
        row("Capacity", _count(f.get("capacity", 0)) + " entries"),
        row("In the category", _count(f.get("entries", 0))),
        row("Evicted", f"{_count(f.get('evicted', 0))} of its own least recently seen"),
        row("Quota reserve", f"{_count(f.get('reserve', 0))} slots kept free on the tenant"),
        "",
        paragraph(
            "Capacity is the instance's own entries plus the tenant's free custom-URL quota, "
            f"less quota_reserve{', ' + cap_note if cap_note else ''}."
        ),
        "",
        "What to change:",
        paragraph(
            f"raise max_entries of [instances.{alert.instance}] (if set), lower quota_reserve "
            f"of [zia.{alert.zia_tenant}], lower expire_after so stale entries leave sooner, "
            "free quota in other custom categories, or buy more quota.",
            "  ",
        ),
        "",
        paragraph("This e-mail is sent once; another only after the category fits again."),
    ]
    return "\n".join(lines) + "\n"
