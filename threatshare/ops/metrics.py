"""``/metrics`` (docs/design.md#operations-endpoint): the fleet's state in Prometheus' text
format, computed at scrape time.

A custom collector reads one :class:`~threatshare.ops.snapshot.Snapshot` per scrape, so one
endpoint anywhere covers the whole fleet and agrees with ``status --json``. Names follow
Prometheus' conventions: the ``threatshare_`` prefix, the unit in the name, ``_total`` on
counters; labels are bounded sets only (instance, tenant, state, outcome, error code), never an
entry. When Redis cannot be read only ``threatshare_redis_up 0`` is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from threatshare.ops.snapshot import Snapshot, age_seconds
from threatshare.state.counters import TOTALS

STATES = ("new", "ok", "retrying", "halted", "disabled")

#: status record ``lifecycle`` count (docs/design.md#expiry, when present) -> (metric name, help)
LIFECYCLE = {
    "expired": ("threatshare_instance_entries_expired_total", "Entries removed on expiry"),
    "evicted": ("threatshare_instance_entries_evicted_total", "Entries evicted for room"),
    "removed_by_hand": (
        "threatshare_instance_entries_removed_by_hand_total",
        "Entries found removed from the category by hand",
    ),
}


def _instance_families(records: list[dict[str, Any]], snapshot: Snapshot) -> Iterator[Metric]:
    label = ["instance"]
    state = GaugeMetricFamily(
        "threatshare_instance_state",
        "1 for the state the instance is in",
        labels=["instance", "state"],
    )
    bookmark = GaugeMetricFamily(
        "threatshare_instance_bookmark_age_seconds", "Age of the bookmark", labels=label
    )
    entries = GaugeMetricFamily(
        "threatshare_instance_category_entries", "Entries in the category", labels=label
    )
    duration = GaugeMetricFamily(
        "threatshare_instance_last_run_duration_seconds", "Duration of the last run", labels=label
    )
    skew = GaugeMetricFamily(
        "threatshare_instance_clock_skew_seconds",
        "How far the clock of the last run's worker was ahead of Mimecast's",
        labels=label,
    )
    runs = CounterMetricFamily(
        "threatshare_instance_runs_total", "Runs by outcome", labels=["instance", "outcome"]
    )
    errors = CounterMetricFamily(
        "threatshare_instance_errors_total",
        "Failed runs by error code",
        labels=["instance", "code"],
    )
    totals = {t.name: CounterMetricFamily(t.metric, t.help, labels=label) for t in TOTALS}
    lifecycle = {k: CounterMetricFamily(n, h, labels=label) for k, (n, h) in LIFECYCLE.items()}
    for r in records:
        name = r["name"]
        for s in STATES:
            state.add_metric([name, s], 1.0 if r["state"] == s else 0.0)
        age = age_seconds(r["bookmark"], snapshot.at)
        if age is not None:
            bookmark.add_metric([name], age)
        entries.add_metric([name], r["category"]["entries"])
        stats = r["run_stats"]
        if stats["last_duration_seconds"] is not None:
            duration.add_metric([name], stats["last_duration_seconds"])
        if r.get("clock_skew_seconds") is not None:
            skew.add_metric([name], r["clock_skew_seconds"])
        for outcome, count in sorted(stats["runs_by_outcome"].items()):
            runs.add_metric([name, outcome], count)
        for code, count in sorted(stats["errors_by_code"].items()):
            errors.add_metric([name, code], count)
        for key, family in totals.items():
            family.add_metric([name], r["totals"].get(key, 0))
        for key, family in lifecycle.items():
            if r.get("lifecycle") and key in r["lifecycle"]:
                family.add_metric([name], r["lifecycle"][key])
    yield from (state, bookmark, entries, duration, skew, runs, errors)
    yield from totals.values()
    yield from (f for f in lifecycle.values() if f.samples)


def _tenant_families(snapshot: Snapshot) -> Iterator[Metric]:
    label = ["tenant"]
    quota = {
        part: GaugeMetricFamily(
            f"threatshare_tenant_quota_{part}_entries", f"Custom URL quota {part}", labels=label
        )
        for part in ("used", "remaining", "reserve")
    }
    activations = CounterMetricFamily(
        "threatshare_tenant_activations_total", "Activations of staged changes", labels=label
    )
    throttled = CounterMetricFamily(
        "threatshare_tenant_rate_limited_responses_total", "HTTP 429 answers of ZIA", labels=label
    )
    since = GaugeMetricFamily(
        "threatshare_tenant_last_activation_age_seconds",
        "Seconds since the last activation",
        labels=label,
    )
    pending = GaugeMetricFamily(
        "threatshare_tenant_activation_pending_seconds",
        "Seconds the oldest staged change has waited for activation (0: none waits)",
        labels=label,
    )
    refused = GaugeMetricFamily(
        "threatshare_tenant_activation_refused",
        "1 while ZIA's last answer to an activation was a permanent refusal",
        labels=label,
    )
    for t in snapshot.tenants:
        # 0 rather than absent when nothing waits: an alert on "> 900" then always has a series.
        waited = age_seconds(t.pending_activation_since, snapshot.at)
        pending.add_metric([t.name], waited or 0.0)
        refused.add_metric([t.name], 1.0 if t.activation_refused else 0.0)
        for part, family in quota.items():
            if t.quota and t.quota.get(part) is not None:
                family.add_metric([t.name], t.quota[part])
        activations.add_metric([t.name], t.activations)
        throttled.add_metric([t.name], t.rate_limited)
        age = age_seconds(t.last_activation, snapshot.at)
        if age is not None:
            since.add_metric([t.name], age)
    yield from quota.values()
    yield from (activations, throttled, since, pending, refused)


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """Every metric family of one snapshot."""
    up = GaugeMetricFamily("threatshare_redis_up", "1 when Redis answered this scrape")
    up.add_metric([], 1.0 if snapshot.redis_up else 0.0)
    yield up
    if not snapshot.redis_up:
        return
    yield from _instance_families(snapshot.instances, snapshot)
    yield from _tenant_families(snapshot)
    outbox = GaugeMetricFamily(
        "threatshare_outbox_alerts", "Alerts (e-mail and webhook) waiting for delivery"
    )
    outbox.add_metric([], snapshot.outbox)
    yield outbox
    if snapshot.workers is not None:
        workers = GaugeMetricFamily("threatshare_workers_seen", "Fleet workers registered in RQ")
        workers.add_metric([], snapshot.workers)
        yield workers


class SnapshotCollector(Collector):
    """Reads a fresh snapshot on every scrape."""

    def __init__(self, take: Callable[[], Snapshot]) -> None:
        self._take = take

    def collect(self) -> Iterator[Metric]:
        return families(self._take())


def registry(take: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry of its own (no process-wide default): only threatshare's metrics."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(take))
    return reg
