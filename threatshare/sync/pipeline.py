"""The pipeline of one run of one instance (docs/design.md#entries,
docs/design.md#the-bookmark-and-the-window): pull, dedupe, stage, push, withdraw.

::

    window ─► Mimecast pages ─► entries ─► runtime allow list, tombstones ─► dedupe against
           the category (the ledger; sightings recorded) ─► staged in Redis ─► the lifecycle:
           reconcile, expire, make room, ZIA adds (newest first) ─► tenant marked "to activate"

:class:`Run` does the work and counts it. It stages in a key of its own (two runs of one
instance never clear each other's), and it checks its lock between pages and between batches:
a run that lost its lock stops there (:class:`~threatshare.errors.LockLost`) and writes nothing
more. :class:`Run` does the work; what its end means for the instance (state, bookmark,
alerts) is decided in :mod:`threatshare.sync.transitions`. Activation is not done here: the
caller activates each changed tenant once (:mod:`threatshare.sync.activation`), which is what
ZIA's hourly activation limit asks for.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import compress, islice
from typing import Any

import structlog

from threatshare.alerts.outbox import Outbox
from threatshare.http import Deadline
from threatshare.indicators.evidence import impersonation_evidence, url_evidence
from threatshare.indicators.extract import Extractor, Tally
from threatshare.indicators.rules import Rules
from threatshare.progress import Phase, RunProgress
from threatshare.runtime import Runtime
from threatshare.state.counters import RunCounters
from threatshare.state.ledger import Ledger
from threatshare.state.lock import RunLock
from threatshare.state.provenance import MessageKey, ProvenanceBook
from threatshare.state.store import InstanceState, Store
from threatshare.state.unblocked import Matcher, UnblockList
from threatshare.sync.change import Accepted, CategoryChange, Reason
from threatshare.sync.lifecycle import Lifecycle
from threatshare.sync.lifecycle_alerts import report_capacity, warn_about_quota
from threatshare.sync.sightings import Sightings
from threatshare.sync.window import Window

log = structlog.get_logger(__name__)

URL_SOURCES = {"malicious_urls", "url_domains"}
SAMPLE = 20  # entries a dry run lists
SEEN_LIMIT = 100_000  # entries a run remembers having looked up (bounded memory)


class Run:
    """The state of one run of one instance; :func:`sync_instance` drives it."""

    def __init__(self, rt: Runtime, name: str, *, dry_run: bool) -> None:
        self.rt = rt
        self.name = name
        self.inst = rt.config.instances[name]
        self.store = Store(rt.redis)
        self.ledger = Ledger(rt.redis)
        #: The runtime allow list as it is when the run starts (docs/design.md#unblocking).
        self.unblocked = UnblockList(rt.redis, name).matcher()
        self.dry_run = dry_run
        self.run_id = uuid.uuid4().hex[:12]
        #: This run's own staging key.
        self.staging = self.ledger.staging(name, self.run_id)
        self.tally = Tally()
        # One per run: its caches of decisions serve the whole window.
        self.extractor = Extractor(
            self.inst.sources, self.inst.allow, rules=Rules.of(rt.config.settings)
        )
        #: entries withdrawn because today's rules would not push them, by reason.
        self.withdrawn: Counter[str] = Counter()
        self.pushed = 0
        #: The one path of this run's changes to the category (made once the lock is held).
        self.change: CategoryChange | None = None
        self.refused: dict[str, str] = {}
        self.sample: list[str] = []
        #: entries met in this run, until written (bounded: see SEEN_LIMIT).
        self.seen: set[str] = set()
        #: entries of ``seen`` the category holds, once written (the others are staged).
        self.known: set[str] = set()
        #: entries of ``seen`` never pushed: the runtime allow list covers them.
        self.left_out: set[str] = set()
        #: What the records said of each entry, for its provenance.
        self.sightings = Sightings(
            ProvenanceBook(rt.redis, name),
            MessageKey(rt.config.mimecast[self.inst.mimecast].client_secret.get_secret_value()),
            self.inst.sources,
        )
        self.new_in_dry_run = 0
        self.lock: RunLock | None = None
        self.started: datetime | None = None
        # What the run reports to rt.progress.
        self.pages = 0
        self.records = 0
        self.staged = 0
        self.to_push = 0

    def report(self, phase: Phase, outcome: str | None = None) -> None:
        self.rt.progress(
            RunProgress(
                self.name,
                phase,
                pages=self.pages,
                records=self.records,
                staged=self.staged,
                pushed=self.pushed,
                to_push=self.to_push,
                batch_size=self.inst.batch_size,
                outcome=outcome,
            )
        )

    def duration(self) -> float | None:
        """Seconds since the run took its lock, by the runtime's clock."""
        return None if self.started is None else (self.rt.now() - self.started).total_seconds()

    def check_lock(self) -> None:
        """Stop here (LockLost) when the run no longer holds its instance's lock."""
        if self.lock is not None:
            self.lock.check()

    @property
    def removed(self) -> int:
        """Entries this run removed from the category, for every reason."""
        return 0 if self.change is None else self.change.tally.removed_total

    def changing(self, state: InstanceState) -> CategoryChange:
        """The run's one path of changes to the category (under the lock)."""
        if self.change is None:
            assert self.lock is not None  # changing happens only under the lock

            def set_category(category_id: str | None) -> None:
                state.category_id = category_id

            self.change = CategoryChange(
                self.rt.redis,
                name=self.name,
                inst=self.inst,
                tenant_id=self.rt.config.zia[self.inst.zia].tenant_id,
                lock=self.lock,
                run_id=self.run_id,
                now=self.rt.now,
                category_id=state.category_id,
                audit_retention=self.rt.config.settings.audit_retention,
                staging=self.staging,
                on_category=set_category,
            )
            self.change.listeners.append(self._landed)
        return self.change

    # --- pulling -------------------------------------------------------------------------

    def take_page(
        self,
        page: list[Any],
        extract: Callable[[Any, Tally], tuple[str, ...]],
        time_field: str,
        default_time: float,
        evidence: Callable[[Any], tuple[object, object]],
    ) -> None:
        """Extract one page's entries and keep, in memory, the newest record time of each and
        what the records said (their sightings). An entry met for the first time in the pull is
        checked against the runtime allow list; nothing is read or written in Redis here: what
        a pull met is deduped against the category and written once, by :meth:`write_met`."""
        self.check_lock()
        seen = self.seen
        first: list[str] = []
        tally = self.tally
        sighted = self.sightings.add
        from_iso = datetime.fromisoformat
        for record in page:
            entries = extract(record, tally)
            if not entries:
                continue
            # A record that gave entries is a dict. Its time, clamped to the window: one dated
            # in the future, or not dated at all, counts as seen at the window's end, so no
            # upstream date makes an entry permanent (inline: this runs for every record).
            try:
                when = from_iso(record[time_field]).timestamp()
            except (TypeError, KeyError, ValueError, OverflowError):
                when = default_time
            if when > default_time:
                when = default_time
            # Only a record of a new kind can bring an entry met for the first time; the
            # newest time of each entry is read from the sightings when they are written.
            if sighted(entries, when, evidence, record):
                for entry in entries:
                    if entry not in seen:
                        seen.add(entry)
                        first.append(entry)
        if first and self.unblocked:
            self._leave_out_unblocked(first)
        if len(seen) > SEEN_LIMIT:
            self.write_met()  # memory stays bounded whatever the backlog

    def _leave_out_unblocked(self, first: list[str]) -> None:
        """Entries met for the first time that an operator unblocked, or a wildcard over what
        was unblocked: never pushed; counted once."""
        for entry in first:
            if self.unblocked(entry):
                reason = "unblocked"
            elif entry[0] == "." and self.unblocked.any_under(entry):
                reason = "covers_allowed"  # a wildcard never covers what was unblocked
            else:
                continue
            self.left_out.add(entry)
            self.sightings.drop(entry)
            self.tally.skipped[reason] += 1

    def write_met(self) -> None:
        """Dedupe what the pull met since the last write and write it, once per entry: its
        newest record time (a sighting for those in the category, a stage for the others) and
        its provenance; then forget it."""
        self.write_times()
        self.write_provenance()
        self.seen.clear()
        self.known.clear()
        self.left_out.clear()

    def write_times(self) -> None:
        """The dedupe: every entry met, against the category and the entries removed by hand,
        with its newest record time; one call per chunk (nothing written in a dry run)."""
        met = self.sightings.newest()
        for entry in self.left_out:
            met.pop(entry, None)
        if not met:
            return
        self.check_lock()
        letters = self.ledger.record_met(self.name, self.staging, met, write=not self.dry_run)
        self.known.update(compress(met, map("k".__eq__, letters)))
        skipped = self.tally.skipped
        if "b" in letters:
            # Removed from the category by hand after its newest record: not pushed back
            # (docs/design.md#reconciliation).
            for entry in compress(met, map("b".__eq__, letters)):
                skipped["removed_by_hand"] += 1
                self.sightings.drop(entry)
        if self.known:
            skipped["already_in_category"] += len(self.known)
        fresh = letters.count("f")
        if self.dry_run:
            self.new_in_dry_run += fresh
            room = max(0, SAMPLE - len(self.sample))
            self.sample.extend(islice(compress(met, map("f".__eq__, letters)), room))
        else:
            self.staged += fresh

    def write_provenance(self) -> None:
        """Merge this run's sightings into the entries' provenance; memory is freed."""
        if self.sightings and not self.dry_run:
            self.sightings.flush(self.known)
        self.sightings.clear()

    def pull(self, window: Window, deadline: Deadline) -> bool:
        """Pull every enabled source over ``window``; False when the deadline passed between
        two pages and the pull stopped there (what was pulled is staged all the same)."""
        client = self.rt.mimecast_client(self.inst.mimecast, deadline)
        end_ts = window.end.timestamp()
        sources: list[
            tuple[
                Iterator[list[Any]],
                Callable[[Any, Tally], tuple[str, ...]],
                str,
                Callable[[Any], tuple[object, object]],
            ]
        ] = []
        if URL_SOURCES & set(self.inst.sources):
            pages = client.url_log_pages(window.start, window.end)
            sources.append((pages, self.extractor.url_record, "date", url_evidence))
        if "malicious_domains" in self.inst.sources:
            pages = client.impersonation_log_pages(window.start, window.end)
            sources.append(
                (pages, self.extractor.impersonation_record, "eventTime", impersonation_evidence)
            )
        try:
            for pages, extract, time_field, evidence in sources:
                for page in pages:
                    self.take_page(page, extract, time_field, end_ts, evidence)
                    self._pulled(page)
                    if deadline.expired:
                        log.info("run.deadline_reached", window_to=window.end.isoformat())
                        self._pulled_all()
                        return False
            self._pulled_all()
            return True
        finally:
            # Page entries that were not even JSON objects never reach the extractor.
            if client.malformed_records:
                self.tally.pulled += client.malformed_records
                self.tally.rejected["malformed_record"] += client.malformed_records
            client.close()

    def _pulled_all(self) -> None:
        """The pull's end: what it met is written, and the progress says what was staged."""
        self.write_met()
        self.report("pulling")

    def _pulled(self, page: list[Any]) -> None:
        self.pages += 1
        self.records += len(page)
        self.report("pulling")

    # --- pushing -------------------------------------------------------------------------

    def update_category(
        self, state: InstanceState, deadline: Deadline, *, final: bool = True
    ) -> None:
        """The push of what this chunk staged and, with the ``final`` chunk of the run, the
        category's lifecycle (docs/design.md#reconciliation: reconcile, expire); no ZIA call at all
        when nothing is new, due or to reconcile."""
        assert self.lock is not None  # changing the category happens only under the lock
        tenant = self.rt.config.zia[self.inst.zia]
        change = self.changing(state)
        lifecycle = Lifecycle(
            inst=self.inst,
            tenant=tenant,
            change=change,
            tally=self.tally,
            reconcile_every=self.rt.config.settings.reconcile_every,
            configured=frozenset(self.rt.config.instances),
            final=final,
        )
        if not lifecycle.needs_zia(change.category_id):
            return
        self.check_lock()
        client = self.rt.zia_client(self.inst.zia, deadline)
        outcome = lifecycle.outcome
        self.to_push = self.ledger.staged_count(self.staging)
        if self.to_push:
            self.report("pushing")
        try:
            lifecycle.work(client)
            outbox = Outbox(self.rt.redis)
            if outcome.quota is not None or outcome.removed:  # a removal may re-arm it
                warn_about_quota(
                    self.rt.config, self.name, outbox, change.quota_record, client, self.rt.now()
                )
            entries = self.ledger.entry_count(self.name)
            report_capacity(
                self.rt.config, self.name, outbox, change.record, outcome, entries, self.rt.now()
            )
        finally:
            self.refused.update(outcome.refused)
            client.close()

    def _landed(self, change: Accepted) -> None:
        if change.action == "added":
            self.pushed += len(change.entries)
            self.report("pushing")

    def withdraw(self, state: InstanceState, deadline: Deadline) -> None:
        """Remove from the category what today's rules would not push (see
        docs/design.md#what-is-never-blocked): checked when the configuration or the shipped
        rules changed (the fingerprint), not on every run."""
        if state.category_id is None:
            return
        gone: list[str] = []
        reasons: Counter[str] = Counter()
        kept: list[str] = []
        for entry in self.ledger.scan(self.name):
            reason = self.extractor.withdrawn(entry)
            if reason:
                gone.append(entry)
                reasons[reason] += 1
            elif not entry.startswith("."):
                kept.append(entry)
        for entry in self._for_policies(kept):
            gone.append(entry)
            reasons["policy_verdict"] += 1
        if not gone:
            return
        self._remove(state, gone, "withdrawn", deadline)
        self.withdrawn.update(reasons)  # counted once ZIA took the removal
        log.info("run.withdrawn", removed=len(gone), by_reason=dict(reasons))

    def _for_policies(self, entries: list[str]) -> list[str]:
        """Those of ``entries`` (from URL logs) whose every kept sighting carries a policy
        verdict: what only the records told, read back from their provenance, so a verdict
        added to the rules withdraws what was pushed for it."""
        rules = self.extractor.rules
        if not rules.verdicts:
            return []
        found = self.sightings.book.get(entries)
        return [
            entry
            for entry, prov in found.items()
            if prov.evidence and all(rules.is_policy_verdict(s.verdict) for s in prov.evidence)
        ]

    def _remove(
        self, state: InstanceState, gone: list[str], reason: Reason, deadline: Deadline
    ) -> None:
        """Remove ``gone`` from the category for ``reason`` (forgotten only, when there is no
        category), through the run's one path of changes."""
        if not gone:
            return
        change = self.changing(state)
        self.check_lock()
        if change.category_id is None:
            change.remove(None, gone, reason)
            return
        client = self.rt.zia_client(self.inst.zia, deadline)
        try:
            change.remove(client, gone, reason)
        finally:
            client.close()

    def honour_unblocks(self, state: InstanceState, deadline: Deadline) -> None:
        """Under the lock: read the runtime allow list again (an unblock that ran while this
        run waited for the lock counts too), and remove from the category the entries of the
        record that a pending unblock covers (its own removal failed or was cut short), like
        an expiry: the tenant is then marked to activate. Nothing pending, the usual case,
        costs one Redis read and no ZIA call."""
        unblocks = UnblockList(self.rt.redis, self.name)
        self.unblocked = unblocks.matcher()
        pending = unblocks.pending()
        if not pending:
            return
        assert self.lock is not None  # removing happens only under the lock
        covered = Matcher(pending)
        gone = [e for e in self.ledger.scan(self.name) if covered(e)]
        self._remove(state, gone, "unblocked", deadline)
        unblocks.removed(self.lock, pending)
        log.info("run.unblock_finished", removed=len(gone))

    def counters(self) -> RunCounters:
        removed = {} if self.change is None else self.change.tally.removed
        return RunCounters.of_run(self.tally, self.pushed, self.refused, removed, self.withdrawn)
