"""Every Redis key threatshare uses, in one place.

All keys share the prefix ``threatshare:``. Keys of one instance share the hash tag
``{i:<name>}`` so that the Lua scripts and transactions touching them work on Redis Cluster too.
RQ's own keys (``rq:*``) are RQ's business; the queues are named :data:`QUEUE` and
:data:`FIRST_RUN_QUEUE`.
"""

from __future__ import annotations

PREFIX = "threatshare:"
QUEUE = "threatshare"
#: First runs of new instances: workers take from it before :data:`QUEUE`.
FIRST_RUN_QUEUE = "threatshare-first-runs"


def _instance(name: str) -> str:
    return f"{PREFIX}{{i:{name}}}"


def instance_state(name: str) -> str:
    """Hash: state, bookmark, last success/attempt/error, category id, fingerprint, counters."""
    return f"{_instance(name)}:state"


def instance_entries(name: str) -> str:
    """Hash of earlier versions: entry -> "<first_seen> <last_seen>"; read once, to migrate."""
    return f"{_instance(name)}:entries"


def instance_last_seen(name: str) -> str:
    """Sorted set: every entry the category holds for the instance -> its last sighting (epoch
    seconds of the newest Mimecast record that produced it). Answers "which are due" and
    "which are least recently seen" without reading every entry (docs/design.md#capacity)."""
    return f"{_instance(name)}:seen"


def instance_first_seen(name: str) -> str:
    """Hash: entry -> its first sighting (epoch seconds), for the same entries."""
    return f"{_instance(name)}:first"


def instance_tombstones(name: str) -> str:
    """Sorted set: entries removed from the category by hand -> when that was noticed (epoch);
    pushed again only for a newer record. Trimmed after Mimecast's 30 days."""
    return f"{_instance(name)}:tombstones"


def instance_unblocked(name: str) -> str:
    """Hash: entry on the instance's runtime allow list -> JSON {at, reason, who}
    (docs/design.md#unblocking)."""
    return f"{_instance(name)}:unblocked"


def instance_unblock_pending(name: str) -> str:
    """Set: entries of the runtime allow list whose removal from the category ZIA has not yet
    accepted (the unblock's removal failed, or it was cut short); the next run finishes it."""
    return f"{_instance(name)}:unblock_pending"


def instance_lifecycle(name: str) -> str:
    """Hash: lifecycle totals and marks (expired, evicted, removed_by_hand, foreign,
    last_reconciled, capacity_since...), shown in status (docs/design.md#command-line,
    docs/design.md#reconciliation)."""
    return f"{_instance(name)}:lifecycle"


def instance_lock(name: str) -> str:
    """String with a TTL: the token of the run that holds the instance (one run at a time)."""
    return f"{_instance(name)}:lock"


def run_staging(name: str, run_id: str) -> str:
    """Sorted set of one run: entries of its window staged for pushing, scored by record time
    (epoch seconds). Per run, so two runs of one instance never clear each other's; deleted
    when the run has pushed them, and given a TTL so a crashed run's staging does not stay."""
    return f"{_instance(name)}:staging:{run_id}"


def instance_run_stats(name: str) -> str:
    """Hash: runs by outcome (``runs:<outcome>``), errors by code (``errors:<code>``) and
    ``last_duration_seconds``; the operations endpoint exports them
    (docs/design.md#operations-endpoint)."""
    return f"{_instance(name)}:runstats"


def instance_provenance(name: str) -> str:
    """Hash: entry of the category -> JSON of its provenance (sources, sightings, when pushed,
    the newest sightings' record time, verdict and keyed message hash); forgotten with the
    entry (docs/design.md#provenance-and-audit)."""
    return f"{_instance(name)}:provenance"


def audit_trail() -> str:
    """Stream: one item per change threatshare made to a category (added, expired, evicted,
    withdrawn, unblocked, removed_by_hand, adopted, recreated), ids from the product's clock;
    capped in length and trimmed by age (docs/design.md#provenance-and-audit)."""
    return f"{PREFIX}audit"


def instances_index() -> str:
    """Set of instance names that have state; `status` lists them."""
    return f"{PREFIX}instances"


def tenant_limit(tenant: str, bucket: str) -> str:
    """Sorted set of recent call times for one ZIA tenant and one rate-limit bucket."""
    return f"{PREFIX}{{t:{tenant}}}:limit:{bucket}"


def tenant_unactivated(tenant_id: str) -> str:
    """Integer generation of the changes staged in a ZIA tenant and not yet activated."""
    return f"{PREFIX}{{t:{tenant_id}}}:unactivated"


def tenant_unactivated_since(tenant_id: str) -> str:
    """ISO time of the oldest staged change of a ZIA tenant not yet activated (status)."""
    return f"{PREFIX}{{t:{tenant_id}}}:unactivated_since"


def tenant_activation_refused(tenant_id: str) -> str:
    """Hash {code, message, at}: ZIA's last permanent refusal to activate the tenant; deleted
    by the next activation that succeeds."""
    return f"{PREFIX}{{t:{tenant_id}}}:activation_refused"


def tenant_activation_lock(tenant_id: str) -> str:
    """String with a TTL: held while one worker activates the tenant."""
    return f"{PREFIX}{{t:{tenant_id}}}:activating"


def tenants_unactivated() -> str:
    """Set of tenant ids with staged, unactivated changes (for the fleet's activator)."""
    return f"{PREFIX}tenants:unactivated"


def tenant_quota(tenant: str) -> str:
    """Hash: last quota read of a ZIA tenant: used, remaining, at."""
    return f"{PREFIX}{{t:{tenant}}}:quota"


def tenant_stats(tenant: str) -> str:
    """Hash of a ZIA tenant's totals for the operations endpoint
    (docs/design.md#operations-endpoint): ``activations``, ``rate_limited`` (429 answers) and
    ``last_activation`` (ISO time)."""
    return f"{PREFIX}{{t:{tenant}}}:stats"


def tenant_quota_history(tenant: str) -> str:
    """Sorted set of hourly quota readings of a ZIA tenant ("<epoch>:<used>" -> epoch), for the
    fill forecast of the quota warning; a few weeks at most."""
    return f"{PREFIX}{{t:{tenant}}}:quota:history"


def tenant_quota_warning(tenant: str) -> str:
    """Hash: the quota warning's hysteresis for a ZIA tenant: armed, crossings."""
    return f"{PREFIX}{{t:{tenant}}}:quota:warning"


def outbox() -> str:
    """List of alert e-mails waiting for delivery (JSON), oldest at the head."""
    return f"{PREFIX}alerts:outbox"


def alert_sent(name: str, incident: str) -> str:
    """String with a TTL: marks an alert of one incident as queued, so no incident alerts twice."""
    return f"{_instance(name)}:alerted:{incident}"


def tenant_alert_sent(tenant: str, incident: str) -> str:
    """String with a TTL: marks a tenant's alert (the quota warning) of one incident as queued,
    whichever instance of the tenant noticed it."""
    return f"{PREFIX}{{t:{tenant}}}:alerted:{incident}"


def outbox_sending(alert_id: str) -> str:
    """String with a TTL: held by the delivery that is sending one outbox alert right now."""
    return f"{PREFIX}alerts:sending:{alert_id}"


def scheduler_slot(name: str, slot: int) -> str:
    """Job id (not a key) of an instance's sync job in one time slot; RQ ids allow no colon."""
    return f"sync-{name}-{slot}"


def round_slot(name: str, cycle: int) -> str:
    """Job id (not a key) of an instance's run in its paced tenant's round before an
    activation; ``cycle`` names the round after the activation it follows."""
    return f"round-{name}-{cycle}"


def activation_slot(tenant: str, slot: int) -> str:
    """Job id (not a key) of a ZIA tenant's activation job in one coalescing slot."""
    return f"activate-{tenant}-{slot}"


def delivery_slot(slot: int) -> str:
    """Job id (not a key) of the alert outbox's delivery job in one slot."""
    return f"alerts-{slot}"
