"""What one run does to keep its category a living block list (docs/design.md#reconciliation):
reconcile with ZIA, expire stale entries, make room for new threats, and push them.

::

    reconcile (every reconcile_every, or on meeting a category with no record: one GET)
      ─► expire (entries last seen before now − expire_after: REMOVE_FROM_LIST in batches)
      ─► room (one quota read: capacity = own + remaining − reserve, ≤ max_entries;
               the least recently seen of own and new give way: own evicted, new skipped)
      ─► push (the category created with its first batch when there is none)

Nothing here calls ZIA when nothing is due and nothing is new. Every change is preceded by
``mark_changed`` (the tenant must be activated, even after a crash). The entries removed are
only ever the instance's own (pushed by it, or adopted from a category whose description names
threatshare and this instance): an admin's entries are counted as ``foreign`` and left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from threatshare.capacity import capacity, excess, least_recent, reserve_slots
from threatshare.config import Instance, ZiaTenant
from threatshare.errors import QuotaExhausted
from threatshare.indicators.extract import Tally
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.lock import RunLock
from threatshare.state.quota import QuotaRecord
from threatshare.zia.categories import CategoryContent, category_description, names_us
from threatshare.zia.client import Quota, ZiaClient
from threatshare.zia.errors import CategoryGone, EmptyCategoryRefused

log = structlog.get_logger(__name__)

#: The skip reason of new threats left out for lack of room (docs/design.md#capacity).
CAPACITY = "capacity"
#: Entries in ZIA compared against the record per round trip to Redis.
_COMPARE = 1000


@dataclass
class Outcome:
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
        name: str,
        inst: Instance,
        tenant: ZiaTenant,
        ledger: Ledger,
        record: LifecycleRecord,
        quota_record: QuotaRecord,
        tally: Tally,
        now: Callable[[], datetime],
        reconcile_every: timedelta,
        mark_changed: Callable[[], None],
        set_category: Callable[[str | None], None],
        staging: str,
        lock: RunLock,
        final: bool = True,
        on_pushed: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.name = name
        self.inst = inst
        self.tenant = tenant
        self.ledger = ledger
        self.record = record
        self.quota_record = quota_record
        self.tally = tally
        self.now = now
        self.reconcile_every = reconcile_every
        self.mark_changed = mark_changed
        self.set_category = set_category
        #: Hears how many entries each accepted batch held (a run's progress).
        self.on_pushed = on_pushed
        #: The run's own staging key, and its lock: every write that forgets is fenced by it.
        self.staging = staging
        self.lock = lock
        #: The last chunk of the run: only then are reconciliation and expiry due.
        self.final = final
        self.outcome = Outcome()

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

    def work(self, client: ZiaClient, category_id: str | None) -> str | None:
        """Reconcile, expire, make room and push; returns the category id it ended with."""
        first_look = category_id is None and not self.record.load().looked_up
        category_id = self._meet(client, category_id)
        due = self.final and self._reconcile_due(self.record.load().last_reconciled)
        if category_id is not None and due:
            category_id = self.reconcile(client, category_id)
        if category_id is not None and self.final:
            self._expire(client, category_id)
        if self.ledger.staged_count(self.staging):
            category_id = self._push(client, category_id)
        elif category_id is None and first_look:
            category_id = self._create_empty(client)
        self._save_quota()
        return category_id

    def _meet(self, client: ZiaClient, category_id: str | None) -> str | None:
        """With no record of the category, find it by name: a category found is one the
        record knows nothing of, so it is reconciled at once (no duplicate, nothing lost)."""
        if category_id is not None:
            return category_id
        found = client.find_category(self.inst.category)
        self.record.looked_up()
        if found is None:
            return None
        self.set_category(found)
        log.info("lifecycle.category_found", category=self.inst.category)
        return self.reconcile(client, found)

    def reconcile(self, client: ZiaClient, category_id: str) -> str | None:
        """Compare the record with the category (one GET, docs/design.md#reconciliation). Returns
        the id, or None when the category was deleted by hand: then every live entry is staged to
        refill a new one."""
        content = client.read_category(category_id)
        now = self.now()
        if content is None:
            staged = self.ledger.restage_all(self.name, self.staging, self.lock)
            self.set_category(None)
            self.record.forget_category()
            log.warning("lifecycle.category_deleted_by_hand", restaged=staged)
            return None
        in_zia = set(content.urls)
        gone = [e for e in self.ledger.scan(self.name) if e not in in_zia]
        self.ledger.tombstone(self.name, self.lock, gone, now)
        adopted, foreign = self._adopt(content, now)
        self.outcome.removed_by_hand += len(gone)
        self.outcome.adopted += adopted
        self.outcome.foreign = foreign
        self.record.add(removed_by_hand=len(gone), adopted=adopted)
        self.record.reconciled(now, foreign)
        log.info(
            "lifecycle.reconciled", removed_by_hand=len(gone), adopted=adopted, foreign=foreign
        )
        return category_id

    def _adopt(self, content: CategoryContent, now: datetime) -> tuple[int, int]:
        ours = names_us(content.description, self.name)
        adopted = foreign = 0
        for start in range(0, len(content.urls), _COMPARE):
            chunk = content.urls[start : start + _COMPARE]
            unknown = self.ledger.split_known(self.name, chunk)[0]
            if ours:
                self.ledger.adopt(self.name, unknown, now)
                adopted += len(unknown)
            else:
                foreign += len(unknown)
        return adopted, foreign

    def _expire(self, client: ZiaClient, category_id: str) -> None:
        cutoff = self._expiry_cutoff()
        if cutoff is None:
            return
        batch = self.inst.batch_size
        # Bounded: each pass removes what it read; the count caps the passes.
        for _ in range(self.ledger.due_count(self.name, cutoff) // batch + 1):
            due = self.ledger.due(self.name, cutoff, batch)
            if not due:
                break
            self._remove(client, category_id, due)
            self.outcome.expired += len(due)
            self.record.add(expired=len(due))
        if self.outcome.expired:
            log.info("lifecycle.expired", expired=self.outcome.expired)

    def _remove(self, client: ZiaClient, category_id: str, entries: list[str]) -> None:
        self.mark_changed()
        client.remove(category_id, self.inst.category, entries, self.inst.batch_size)
        self.ledger.record_removed(self.name, self.lock, entries)
        self.mark_changed()

    def _room(self, client: ZiaClient, category_id: str | None) -> int:
        """Read the quota once, evict and skip what does not fit; the room left for adds."""
        quota = client.quota()
        self.outcome.quota = quota
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
            assert category_id is not None  # own entries exist only in an existing category
            self._remove(client, category_id, losers.evict)
            self.outcome.evicted += len(losers.evict)
            self.record.add(evicted=len(losers.evict))
            log.info("lifecycle.evicted", evicted=len(losers.evict), capacity=cap)
        if losers.skip:
            self.ledger.unstage(self.staging, losers.skip)
            self.tally.skipped[CAPACITY] += len(losers.skip)
            self.outcome.left_out += len(losers.skip)
        return cap - (own - len(losers.evict))

    def _push(
        self, client: ZiaClient, category_id: str | None, *, again: bool = True
    ) -> str | None:
        room = self._room(client, category_id)
        scores: dict[str, float] = {}

        def batches() -> Iterator[list[str]]:
            for chunk in self.ledger.staged_newest_first(self.staging, self.inst.batch_size):
                self.lock.check()  # a run that lost its lock pushes nothing more
                scores.update(chunk)
                yield list(chunk)

        def landed(batch: list[str]) -> None:
            self.mark_changed()
            self.ledger.record_pushed(self.name, {e: scores.pop(e) for e in batch})
            self.outcome.pushed += len(batch)
            self.on_pushed(len(batch))

        stream = batches()
        self.mark_changed()
        total, before, refused_before = (
            self.ledger.staged_count(self.staging),
            self.outcome.pushed,
            len(self.outcome.refused),
        )
        try:
            if category_id is None:
                category_id = self._create_with(client, stream, landed, room)
                room -= self.outcome.pushed - before
            if category_id is not None:
                _, refused = client.add_batches(
                    category_id, self.inst.category, stream, landed, room=room
                )
                self.outcome.refused.update(refused)
        except QuotaExhausted as exc:
            # The quota shrank since it was read (an admin's edit meanwhile): what did not fit
            # is left out like any shortfall of room, and the instance stays ok.
            self.outcome.refused.update(exc.rejected)
            handled = self.outcome.pushed - before + len(self.outcome.refused) - refused_before
            left_out = max(0, total - handled)
            self.tally.skipped[CAPACITY] += left_out
            self.outcome.left_out += left_out
        except CategoryGone:
            # Deleted by hand since the last look: everything it held, and what this run
            # pushed, goes into a new one (docs/design.md#reconciliation), now.
            self.ledger.restage_all(self.name, self.staging, self.lock)
            self.set_category(None)
            self.record.forget_category()
            if not again:
                raise
            log.warning("lifecycle.category_deleted_by_hand")
            return self._push(client, None, again=False)
        self.ledger.clear_staged(self.staging)
        return category_id

    def _create_with(
        self,
        client: ZiaClient,
        stream: Iterator[list[str]],
        landed: Callable[[list[str]], None],
        room: int,
    ) -> str | None:
        """Create the category holding the first batch of what fits (docs/design.md#capacity)."""
        for first in stream:
            description = category_description(self.name, self.inst.description)
            created = client.create_with_entries(
                self.inst.category, description, first[:room], landed, self.outcome.refused
            )
            if created is not None:
                self.set_category(created)
                self.record.looked_up()
                self.record.reconciled(self.now(), 0)  # it holds exactly what was recorded
                return created
        return None

    def _create_empty(self, client: ZiaClient) -> str | None:
        """Nothing to push and no category: create it empty where the tenant allows
        (docs/design.md#pushing-to-zia)."""
        description = category_description(self.name, self.inst.description)
        try:
            created = client.find_or_create_category(self.inst.category, description)
        except EmptyCategoryRefused:
            log.info("lifecycle.category_waits_for_entries", category=self.inst.category)
            return None
        self.mark_changed()
        self.set_category(created)
        self.record.reconciled(self.now(), 0)
        return created

    def _save_quota(self) -> None:
        """The quota as it is after this run's own changes (docs/design.md#capacity), without
        reading it again."""
        now = self.now()
        freed = self.outcome.removed
        quota = self.outcome.quota
        if quota is None:
            self.quota_record.adjust(freed, now)
            return
        # The evicted entries were removed after the reading; the pushed ones added.
        used = max(0, quota.used + self.outcome.pushed - self.outcome.evicted)
        total = quota.used + quota.remaining
        self.quota_record.save(used, max(0, total - used), now)
