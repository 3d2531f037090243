"""``/``: the status page for people (docs/design.md#operations-endpoint), rendered on the
server from one snapshot.

One row per instance (state in colour, bookmark age, entries, last error and its remedy,
lifecycle counts when the records carry them) and each ZIA tenant's quota as a bar. Instances
that need someone come first: halted, then retrying. On a phone each row is a card, its error
and what to do right under its name, nothing wider than the screen. The page is self-contained
(inline CSS, no script, no external asset) and refreshes itself. Upstream text reaches it only
through Jinja2's autoescaping.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from threatshare.errors import REMEDIES
from threatshare.ops.snapshot import Snapshot, TenantView, age_seconds
from threatshare.ops.status import PENDING_TOO_LONG, age_text

REFRESH_SECONDS = 15
#: The order of instances on the page: what needs someone first.
STATE_ORDER = {"halted": 0, "retrying": 1, "new": 2, "ok": 3, "disabled": 4}
LIFECYCLE_COUNTS = ("expired", "evicted", "removed_by_hand", "foreign", "unblocked")
TEMPORARY_REMEDY = "Nothing to do unless it lasts: the next run tries again."
DEFAULT_REMEDY = "Read the error message, fix its cause, then run `threatshare resume`."


def _age(iso: str | None, snapshot: Snapshot) -> str:
    return age_text(iso, snapshot.at)


def _remedy(error: dict[str, Any]) -> str:
    if error.get("kind") == "temporary":
        return TEMPORARY_REMEDY
    return REMEDIES.get(str(error.get("code")), DEFAULT_REMEDY)


def _row(record: dict[str, Any], snapshot: Snapshot) -> dict[str, Any]:
    error = record["last_error"]
    lifecycle = record.get("lifecycle") or {}
    return {
        "name": record["name"],
        "state": record["state"],
        "category": record["category"]["name"],
        "tenant": record["zia"],
        "bookmark_age": _age(record["bookmark"], snapshot),
        "last_success": _age(record["last_success"], snapshot),
        "entries": record["category"]["entries"],
        "error": error,
        "error_since": _age(record["error_since"], snapshot) if error else None,
        "remedy": _remedy(error) if error else None,
        "lifecycle": [
            (k.replace("_", " "), lifecycle[k]) for k in LIFECYCLE_COUNTS if k in lifecycle
        ],
    }


def _overdue(since: str | None, snapshot: Snapshot) -> bool:
    waited = age_seconds(since, snapshot.at)
    return waited is not None and waited > PENDING_TOO_LONG.total_seconds()


def _bar(tenant: TenantView, snapshot: Snapshot) -> dict[str, Any]:
    quota = tenant.quota or {}
    used, remaining = quota.get("used"), quota.get("remaining")
    total = (used or 0) + (remaining or 0)
    reserve = quota.get("reserve")
    return {
        "name": tenant.name,
        "known": used is not None and remaining is not None,
        "used": used,
        "remaining": remaining,
        "total": total,
        "reserve": reserve,
        "used_percent": round(100.0 * used / total, 1) if total and used is not None else 0.0,
        "reserve_percent": round(100.0 * reserve / total, 1) if total and reserve else 0.0,
        "read": _age(quota.get("at"), snapshot) if quota else None,
        "activations": tenant.activations,
        "pending_since": (
            _age(tenant.pending_activation_since, snapshot)
            if tenant.pending_activation_since
            else None
        ),
        "pending_overdue": _overdue(tenant.pending_activation_since, snapshot),
        "refused": tenant.activation_refused,
        "last_activation": _age(tenant.last_activation, snapshot),
        "rate_limited": tenant.rate_limited,
    }


def _by_urgency(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (STATE_ORDER.get(r["state"], 5), r["name"]))


class StatusPage:
    """The page's template, loaded once per process from the package's data."""

    def __init__(self) -> None:
        env = Environment(
            loader=PackageLoader("threatshare.ops", "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self._template = env.get_template("status.html")

    def render(self, snapshot: Snapshot) -> str:
        return self._template.render(
            snapshot=snapshot,
            generated=snapshot.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            rows=[_row(r, snapshot) for r in _by_urgency(snapshot.instances)],
            tenants=[_bar(t, snapshot) for t in snapshot.tenants],
            refresh=REFRESH_SECONDS,
        )
