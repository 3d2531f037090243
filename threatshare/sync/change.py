"""Changing an instance's category: the one path through which every add and every removal
passes (docs/design.md#the-category-change-path).

A :class:`CategoryChange` is bound to one instance, its lock and one run id (an unblock gets one
of its own). It creates the category with its first batch, adds entries in batches, removes them
with a :data:`Reason`, and handles a category deleted by hand. Around every write to ZIA it:

- marks the tenant "to activate" before the first change (a crash still leaves the mark) and
  after each accepted batch (so a change landing during an activation is not cleared with it);
- records each batch ZIA accepted in the ledger at once, so a run that fails part way leaves the
  ledger saying what the category holds;
- keeps the tenant's stored quota reading in step, so status shows the change;
- adds removals to the lifecycle totals by reason.

:meth:`CategoryChange.accepted` is the one place where each accepted change is known, with its
entries, action, reason, run id and, for an unblock, who and why: a trail of changes or the
provenance of entries hooks in there (:attr:`CategoryChange.listeners`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import redis
import structlog

from threatshare.config import Instance
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.audit import AuditTrail
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.lock import RunLock
from threatshare.state.provenance import ProvenanceBook
from threatshare.state.quota import QuotaRecord
from threatshare.state.store import Store
from threatshare.zia.categories import category_description
from threatshare.zia.client import Quota, ZiaClient
from threatshare.zia.errors import CategoryGone, EmptyCategoryRefused

log = structlog.get_logger(__name__)

#: What a change did to the entries it carries: pushed them, took them out, or took over
#: entries found in a category of its own that its record lacked (adopted).
Action = Literal["added", "removed", "adopted"]
#: Why entries leave the category: no longer reported (expiry), making room for newer ones
#: (eviction), excluded by a changed configuration (withdrawal), or unblocked by an operator.
Reason = Literal["expired", "evicted", "withdrawn", "unblocked"]
#: A removal threatshare did not make but noticed: an admin took the entries out in ZIA.
ByHand = Literal["removed_by_hand"]
REASONS: tuple[Reason, ...] = ("expired", "evicted", "withdrawn", "unblocked")

#: The lifecycle total each removal reason adds to (a withdrawal has none of its own).
_TOTAL_OF: dict[Reason, str] = {
    "expired": "expired",
    "evicted": "evicted",
    "unblocked": "unblocked_removed",
}


@dataclass(frozen=True)
class Accepted:
    """One batch of entries ZIA accepted into or out of the category."""

    instance: str
    action: Action
    entries: tuple[str, ...]
    run_id: str
    #: Why they were removed (None for an add).
    reason: Reason | ByHand | None = None
    #: The operator and the reason they gave (an unblock), cleaned.
    who: str | None = None
    why: str | None = None


Listener = Callable[[Accepted], None]


@dataclass
class Tally:
    """What one :class:`CategoryChange` did so far."""

    added: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    @property
    def removed_total(self) -> int:
        return sum(self.removed.values())


class CategoryChange:
    """Every change one run (or one unblock) makes to an instance's category."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str,
        inst: Instance,
        tenant_id: str,
        lock: RunLock,
        run_id: str,
        now: Callable[[], datetime],
        category_id: str | None,
        audit_retention: timedelta,
        staging: str | None = None,
        who: str | None = None,
        why: str | None = None,
        on_category: Callable[[str | None], None] = lambda category_id: None,
    ) -> None:
        self.name = name
        self.inst = inst
        self.tenant_id = tenant_id
        self.lock = lock
        self.run_id = run_id
        self.now = now
        self.category_id = category_id
        #: Where the entries of a category deleted by hand are staged again (a run's own key);
        #: None for an unblock, which then leaves the refill to the next run.
        self.staging = staging
        self.who = who
        self.why = why
        self.ledger = Ledger(client)
        self.record = LifecycleRecord(client, name)
        self.quota_record = QuotaRecord(client, tenant_id)
        self._marks = ActivationMarks(client, now)
        self._store = Store(client)
        self._on_category = on_category
        self._trail = AuditTrail(client, audit_retention)
        self._provenance = ProvenanceBook(client, name)
        #: Set when the category was deleted by hand: what is pushed next refills a new one.
        self._recreating = False
        self.tally = Tally()
        #: Hear of every accepted change, after the ledger recorded it.
        self.listeners: list[Listener] = []

    # --- the one place each accepted change is known ---------------------------------------

    def accepted(self, change: Accepted, sightings: Mapping[str, float] | None = None) -> None:
        """ZIA accepted ``change``: record it in the ledger, the quota reading and the totals,
        mark the tenant, then tell the listeners. Every add and removal passes here, once per
        accepted batch; ``sightings`` are the record times of added entries."""
        count = len(change.entries)
        if change.action == "added":
            self.ledger.record_pushed(self.name, sightings or {})
            self.tally.added += count
            self.quota_record.shift(count, self.now())
        else:
            assert change.reason is not None  # every removal carries its reason
            self.ledger.record_removed(self.name, self.lock, change.entries)
            self.tally.removed[change.reason] += count
            total = _TOTAL_OF.get(change.reason)
            if total:
                self.record.add(**{total: count})
            self.quota_record.shift(-count, self.now())
        self._marks.mark_unactivated(self.tenant_id)
        self._explain(change)
        for listener in self.listeners:
            listener(change)

    def _explain(self, change: Accepted) -> None:
        """The audit trail's line for each entry, and the entries' provenance kept in step:
        the time of a push is remembered, the provenance of what left is forgotten."""
        now = self.now()
        if change.action == "added":
            self._provenance.pushed(change.entries, int(now.timestamp()))
            action = "recreated" if self._recreating else "added"
        elif change.action == "adopted":
            action = "adopted"
        else:
            self._provenance.forget(change.entries)
            assert change.reason is not None
            action = change.reason
        self._trail.append(
            self.name,
            action,
            change.entries,
            at=now,
            run_id=self.run_id,
            who=change.who or "",
            reason=change.why or "",
        )

    def _change(
        self, action: Action, batch: Iterable[str], reason: Reason | ByHand | None
    ) -> Accepted:
        return Accepted(self.name, action, tuple(batch), self.run_id, reason, self.who, self.why)

    def _about_to_change(self) -> None:
        self.lock.check()  # a run that lost its lock changes nothing more
        self._marks.mark_unactivated(self.tenant_id)

    def _set_category(self, category_id: str | None) -> None:
        self.category_id = category_id
        self._store.set_category(self.name, category_id)
        self._on_category(category_id)

    # --- removing -------------------------------------------------------------------------

    def remove(self, client: ZiaClient | None, entries: Sequence[str], reason: Reason) -> int:
        """Remove ``entries`` from the category for ``reason``, in batches, each recorded as
        ZIA accepts it; how many ZIA removed. With no category (or no client) they are only
        forgotten. An entry ZIA refuses to remove is forgotten too, as it always was: it is not
        tried again on every run."""
        entries = list(dict.fromkeys(entries))
        if not entries:
            return 0
        if self.category_id is None or client is None:
            self.forget(entries)
            total = _TOTAL_OF.get(reason)
            if total:
                self.record.add(**{total: len(entries)})
            return 0
        self._about_to_change()
        removed: set[str] = set()

        def landed(batch: list[str]) -> None:
            removed.update(batch)
            self.accepted(self._change("removed", batch, reason))

        try:
            client.remove(
                self.category_id, self.inst.category, entries, self.inst.batch_size, landed
            )
        except CategoryGone:
            # Deleted by hand: these entries are in no category now, whatever else follows.
            self.forget([e for e in entries if e not in removed])
            if self.staging is None:
                raise  # no run to refill a new one: the next run meets the deletion
            self.gone()
            return len(removed)
        self.forget([e for e in entries if e not in removed])
        return len(removed)

    def removed_by_hand(self, entries: Sequence[str]) -> None:
        """Entries an admin removed from the category in ZIA (found by reconciliation): dropped
        from the record and tombstoned, so that only a newer record pushes them again."""
        if entries:
            self.ledger.tombstone(self.name, self.lock, entries, self.now())
            self._explain(self._change("removed", entries, "removed_by_hand"))

    def adopted(self, entries: Sequence[str]) -> None:
        """Entries found in the category that the record lacks, in a category whose
        description names this instance: they are its own from now on and age from now."""
        if entries:
            self.ledger.adopt(self.name, entries, self.now())
            self._explain(self._change("adopted", entries, None))

    def forget(self, entries: Sequence[str]) -> None:
        """Forget ``entries`` the category does not hold (nothing in ZIA changes)."""
        self.ledger.record_removed(self.name, self.lock, entries)

    # --- adding ---------------------------------------------------------------------------

    def add(
        self,
        client: ZiaClient,
        chunks: Iterable[Mapping[str, float]],
        *,
        room: int,
        refused: dict[str, str],
    ) -> None:
        """Push ``chunks`` (entry -> record time, newest first) into the category, creating it
        with the first batch when there is none (never a placeholder), at most ``room``
        entries. Raises :class:`~threatshare.errors.QuotaExhausted` when the quota shrank
        meanwhile, and :class:`CategoryGone` (after :meth:`gone`) when it was deleted by hand."""
        scores: dict[str, float] = {}

        def batches() -> Iterator[list[str]]:
            for chunk in chunks:
                self.lock.check()  # a run that lost its lock pushes nothing more
                scores.update(chunk)
                yield list(chunk)

        def landed(batch: list[str]) -> None:
            sightings = {e: scores.pop(e) for e in batch}
            self.accepted(self._change("added", batch, None), sightings)

        stream = batches()
        self._about_to_change()
        before = self.tally.added
        try:
            if self.category_id is None:
                self._create_with(client, stream, landed, room, refused)
                room -= self.tally.added - before
            if self.category_id is not None:
                _, rejected = client.add_batches(
                    self.category_id, self.inst.category, stream, landed, room=room
                )
                refused.update(rejected)
        except CategoryGone:
            self.gone()
            raise

    def _create_with(
        self,
        client: ZiaClient,
        stream: Iterator[list[str]],
        landed: Callable[[list[str]], None],
        room: int,
        refused: dict[str, str],
    ) -> None:
        """Create the category holding the first batch of what fits."""
        for first in stream:
            description = category_description(self.name, self.inst.description)
            created = client.create_with_entries(
                self.inst.category, description, first[:room], landed, refused
            )
            if created is not None:
                self._set_category(created)
                self.record.looked_up()
                self.record.reconciled(self.now(), 0)  # it holds exactly what was recorded
                return

    def create_empty(self, client: ZiaClient) -> str | None:
        """Nothing to push and no category: create it empty where the tenant allows."""
        description = category_description(self.name, self.inst.description)
        try:
            created = client.find_or_create_category(self.inst.category, description)
        except EmptyCategoryRefused:
            log.info("lifecycle.category_waits_for_entries", category=self.inst.category)
            return None
        self._marks.mark_unactivated(self.tenant_id)
        self._set_category(created)
        self.record.reconciled(self.now(), 0)
        return created

    # --- the category itself ---------------------------------------------------------------

    def found(self, category_id: str) -> None:
        """The category was found by name (the record knew nothing of it)."""
        self._set_category(category_id)

    def gone(self) -> int:
        """The category was deleted by hand (met once, here): every entry it held is staged
        again in the run's staging to refill a new one, the category is forgotten, and the next
        look finds or creates it. How many entries were staged again."""
        assert self.staging is not None  # only a run, which stages, meets a deleted category
        staged = self.ledger.restage_all(self.name, self.staging, self.lock)
        self._recreating = True
        self._set_category(None)
        self.record.forget_category()
        log.warning("lifecycle.category_deleted_by_hand", restaged=staged)
        return staged

    def quota_read(self, quota: Quota) -> None:
        """A fresh reading of the tenant's quota: stored as it is; the changes that follow
        move it (status shows the quota after the run's own changes)."""
        self.quota_record.save(quota.used, quota.remaining, self.now())
