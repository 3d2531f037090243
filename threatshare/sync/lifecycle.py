"""What one run does to keep its category a living block list (docs/design.md#reconciliation):
reconcile with ZIA, expire stale entries, make room for new threats, and push them.

::

    reconcile (every reconcile_every, or on meeting a category with no record: one GET)
      ─► expire (entries last seen before now − expire_after: REMOVE_FROM_LIST in batches)
      ─► room (one quota read: capacity = own + remaining − reserve, ≤ max_entries;
               the least recently seen of own and new give way: own evicted, new skipped)
      ─► push (the category created with its first batch when there is none)

Nothing here calls ZIA when nothing is due and nothing is new. Every change to the category goes
through :class:`~threatshare.sync.change.CategoryChange` (marks, ledger, quota). The entries
removed are only ever the instance's own (pushed by it, or adopted from a category whose
description names threatshare and this instance, or an instance no longer configured: a rename):
an admin's entries are counted as ``foreign`` and left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from threatshare.capacity import capacity, excess, least_recent, reserve_slots
from threatshare.config import Instance, ZiaTenant
from threatshare.errors import QuotaExhausted
from threatshare.indicators.extract import Tally
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.sync.change import CategoryChange
from threatshare.zia.categories import CategoryContent, instance_named, names_us
from threatshare.zia.client import Quota, ZiaClient
from threatshare.zia.errors import CategoryGone

log = structlog.get_logger(__name__)

#: The skip reason of new threats left out for lack of room (docs/design.md#capacity).
CAPACITY = "capacity"
#: Entries in ZIA compared against the record per round trip to Redis.
_COMPARE = 1000


def renamed_from(description: str, instance: str, configured: Collection[str]) -> str | None:
    """The instance a category's description names when that instance is no longer
    configured: the category of a renamed instance, which ``instance`` (now configured with
    that category) owns. None when the description names ``instance``, a configured instance,
    or none at all."""
    named = instance_named(description)
    if named is None or named == instance or named in configured:
        return None
    return named


def owns(description: str, instance: str, configured: Collection[str]) -> bool:
    """Whether ``instance`` owns the entries of a category with this description: it names
    ``instance``, or an instance no longer configured (a rename)."""
    return names_us(description, instance) or bool(renamed_from(description, instance, configured))


@dataclass
class LifecycleReport:
    """What the lifecycle did in one run, for the counters and the alerts."""

    expired: int = 0
    evicted: int = 0
    removed_by_hand: int = 0
    adopted: int = 0
    foreign: int | None = None
    left_out: int = 0
    pushed: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    capacity: int | None = None
    reserve: int = 0
    quota: Quota | None = None

    @property
    def removed(self) -> int:
        return self.expired + self.evicted


class Lifecycle:
    """The lifecycle of one instance's category during one run."""

    def __init__(
        self,
        *,
        inst: Instance,
        tenant: ZiaTenant,
        change: CategoryChange,
        tally: Tally,
        reconcile_every: timedelta,
        configured: Collection[str] = (),
        final: bool = True,
    ) -> None:
        self.name = change.name
        self.inst = inst
        self.tenant = tenant
        #: The one path of every change to the category; its ledger, record and run's staging.
        self.change = change
        self.ledger: Ledger = change.ledger
        self.record: LifecycleRecord = change.record
        assert change.staging is not None  # a run's lifecycle stages
        self.staging = change.staging
        self.tally = tally
        self.now: Callable[[], datetime] = change.now
        self.reconcile_every = reconcile_every
        #: Every configured instance: a category naming none of them may be a renamed one's.
        self.configured = configured
        #: The last chunk of the run: only then are reconciliation and expiry due.
        self.final = final
        self.outcome = LifecycleReport()

    # --- deciding what is due, without ZIA -------------------------------------------------

    def _expiry_cutoff(self) -> datetime | None:
        if self.inst.expire_after == timedelta(0):
            return None
        return self.now() - self.inst.expire_after

    def needs_zia(self, category_id: str | None) -> bool:
        """Whether this run has anything to do in ZIA (else it makes no call at all,
        docs/design.md#performance)."""
        if self.ledger.staged_count(self.staging):
            return True
        state = self.record.load()
        if category_id is None:
            return not state.looked_up  # look it up (or create it empty) once
        if not self.final:
            return False
        if self._reconcile_due(state.last_reconciled):
            return True
        cutoff = self._expiry_cutoff()
        return cutoff is not None and bool(self.ledger.due(self.name, cutoff, 1))

    def _reconcile_due(self, last: datetime | None) -> bool:
        return last is None or self.now() - last >= self.reconcile_every

    # --- the work ---------------------------------------------------------------------------

    def work(self, client: ZiaClient) -> str | None:
        """Reconcile, expire, make room and push; returns the category id it ended with."""
        change = self.change
        first_look = change.category_id is None and not self.record.load().looked_up
        self._meet(client)
        due = self.final and self._reconcile_due(self.record.load().last_reconciled)
        if change.category_id is not None and due:
            self.reconcile(client, change.category_id)
        if change.category_id is not None and self.final:
            self._expire(client)
        if self.ledger.staged_count(self.staging):
            self._push(client)
        elif change.category_id is None and first_look:
            change.create_empty(client)
        return change.category_id

    def _meet(self, client: ZiaClient) -> None:
        """With no record of the category, find it by name: a category found is one the
        record knows nothing of, so it is reconciled at once (no duplicate, nothing lost)."""
        if self.change.category_id is not None:
            return
        found = client.find_category(self.inst.category)
        self.record.looked_up()
        if found is None:
            return
        self.change.found(found)
        log.info("lifecycle.category_found", category=self.inst.category)
        self.reconcile(client, found)

    def reconcile(self, client: ZiaClient, category_id: str) -> None:
        """Compare the record with the category (one GET). A category deleted by hand
        is met here or by the push (:meth:`CategoryChange.gone`)."""
        content = client.read_category(category_id)
        now = self.now()
        if content is None:
            self.change.gone()
            return
        in_zia = set(content.urls)
        gone = [e for e in self.ledger.scan(self.name) if e not in in_zia]
        self.change.removed_by_hand(gone)
        adopted, foreign = self._adopt(content, now)
        self.outcome.removed_by_hand += len(gone)
        self.outcome.adopted += adopted
        self.outcome.foreign = foreign
        self.record.add(removed_by_hand=len(gone), adopted=adopted)
        self.record.reconciled(now, foreign)
        log.info(
            "lifecycle.reconciled", removed_by_hand=len(gone), adopted=adopted, foreign=foreign
        )

    def _adopt(self, content: CategoryContent, now: datetime) -> tuple[int, int]:
        ours = owns(content.description, self.name, self.configured)
        previous = renamed_from(content.description, self.name, self.configured)
        if previous is not None and self.record.load().renamed_from != previous:
            # Said once: the description keeps naming the old instance, and nothing is lost.
            self.record.renamed(previous, now)
            log.warning("lifecycle.renamed_instance_adopted", previous=previous)
        adopted = foreign = 0
        for start in range(0, len(content.urls), _COMPARE):
            chunk = content.urls[start : start + _COMPARE]
            unknown = self.ledger.split_known(self.name, chunk)[0]
            if ours:
                self.change.adopted(unknown)
                adopted += len(unknown)
            else:
                foreign += len(unknown)
        return adopted, foreign

    def _expire(self, client: ZiaClient) -> None:
        cutoff = self._expiry_cutoff()
        if cutoff is None:
            return
        batch = self.inst.batch_size
        # Bounded: each pass removes what it read; the count caps the passes.
        for _ in range(self.ledger.due_count(self.name, cutoff) // batch + 1):
            due = self.ledger.due(self.name, cutoff, batch)
            if not due or self.change.category_id is None:
                break
            self.change.remove(client, due, "expired")
            self.outcome.expired += len(due)
        if self.outcome.expired:
            log.info("lifecycle.expired", expired=self.outcome.expired)

    def _room(self, client: ZiaClient) -> int:
        """Read the quota once, evict and skip what does not fit; the room left for adds."""
        quota = client.quota()
        self.outcome.quota = quota
        self.change.quota_read(quota)
        own = self.ledger.entry_count(self.name)
        staged = self.ledger.staged_count(self.staging)
        reserve = reserve_slots(self.tenant.quota_reserve, quota.used + quota.remaining)
        cap = capacity(
            own=own, remaining=quota.remaining, reserve=reserve, max_entries=self.inst.max_entries
        )
        self.outcome.capacity, self.outcome.reserve = cap, reserve
        if cap == 0:
            raise QuotaExhausted(
                f"ZIA tenant's custom-URL quota leaves this instance no room: {quota.remaining} "
                f"free, {reserve} kept in reserve (quota_reserve); {staged} entries waiting",
                left_out=staged,
            )
        over = excess(own=own, new=staged, cap=cap)
        losers = least_recent(
            self.ledger.oldest(self.name, over), self.ledger.staged_oldest(self.staging, over), over
        )
        if losers.evict:
            assert self.change.category_id is not None  # own entries exist only in a category
            self.change.remove(client, losers.evict, "evicted")
            self.outcome.evicted += len(losers.evict)
            log.info("lifecycle.evicted", evicted=len(losers.evict), capacity=cap)
        if losers.skip:
            self.ledger.unstage(self.staging, losers.skip)
            self.tally.skipped[CAPACITY] += len(losers.skip)
            self.outcome.left_out += len(losers.skip)
        return cap - (own - len(losers.evict))

    def _push(self, client: ZiaClient, *, again: bool = True) -> None:
        room = self._room(client)
        change = self.change
        total, before, refused_before = (
            self.ledger.staged_count(self.staging),
            change.tally.added,
            len(self.outcome.refused),
        )
        chunks = self.ledger.staged_newest_first(self.staging, self.inst.batch_size)
        try:
            change.add(client, chunks, room=room, refused=self.outcome.refused)
        except QuotaExhausted as exc:
            # The quota shrank since it was read (an admin's edit meanwhile): what did not fit
            # is left out like any shortfall of room, and the instance stays ok.
            self.outcome.refused.update(exc.rejected)
            pushed = change.tally.added - before
            handled = pushed + len(self.outcome.refused) - refused_before
            left_out = max(0, total - handled)
            self.tally.skipped[CAPACITY] += left_out
            self.outcome.left_out += left_out
        except CategoryGone:
            # Deleted by hand since the last look (the change staged everything it held
            # again): what this run pushed goes into a new one, now.
            self.outcome.pushed += change.tally.added - before
            if not again:
                raise
            self._push(client, again=False)
            return
        self.outcome.pushed += change.tally.added - before
        self.ledger.clear_staged(self.staging)
