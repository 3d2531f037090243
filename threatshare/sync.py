"""One run of one instance (S4, S5): the product's main job.

::

    lock ─► window = [bookmark − overlap, now − settle] ─► Mimecast pages ─► entries
         ─► dedupe against the category ─► staged in Redis ─► ZIA adds (newest first)
         ─► tenant marked "to activate" ─► bookmark moved, state ok

The bookmark moves only when every source of the window was pulled and every entry pushed,
rejected or skipped; on any error it stays, so what Mimecast saw meanwhile is shared on
recovery. A temporary error leaves the instance ``retrying``; a permanent one ``halted`` with
one alert. Activation is not done here: the caller activates each changed tenant once
(:mod:`threatshare.zia.activation`), which is what ZIA's 40-an-hour limit asks for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
import structlog

from threatshare.alerts import Alert, recipients_for
from threatshare.config import Instance
from threatshare.errors import (
    PermanentError,
    QuotaExhausted,
    StoreUnavailable,
    TemporaryError,
    ThreatshareError,
)
from threatshare.fingerprint import fingerprint
from threatshare.http import Deadline
from threatshare.indicators import Extractor, Tally
from threatshare.outbox import Outbox
from threatshare.runtime import Runtime
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.ledger import Ledger
from threatshare.state.lock import RunLock, try_lock
from threatshare.state.store import InstanceState, Store
from threatshare.timestamps import to_iso
from threatshare.zia.client import ZiaClient, category_description
from threatshare.zia.errors import CategoryGone

log = structlog.get_logger(__name__)

MIMECAST_RETENTION = timedelta(days=30)
URL_SOURCES = {"malicious_urls", "url_domains"}
SAMPLE = 20  # entries a dry run lists
SEEN_LIMIT = 100_000  # entries a run remembers having looked up (bounded memory)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    lost_from: datetime | None = None  # records older than Mimecast keeps, never to be shared


def window_for(state: InstanceState, inst: Instance, rt: Runtime, now: datetime) -> Window:
    """The window of the next run, clamped to Mimecast's 30 days (S5)."""
    settings = rt.config.settings
    end = now - settings.settle
    start = state.bookmark - settings.overlap if state.bookmark else now - inst.fetch_from
    floor = now - MIMECAST_RETENTION
    if start >= floor:
        return Window(start, end)
    lost_from = state.bookmark if state.bookmark and state.bookmark < floor else None
    return Window(floor, end, lost_from)


@dataclass
class RunResult:
    """What one run did: its outcome, the state it left, and its counters."""

    instance: str
    run_id: str
    outcome: str  # ok | retrying | halted | skipped_halted | skipped_locked | disabled
    state: str
    counters: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    would_push: list[str] = field(default_factory=list)  # dry run: a sample


def _record_time(record: Any, field_name: str, default: float) -> float:
    try:
        return datetime.fromisoformat(str(record[field_name])).timestamp()
    except (TypeError, KeyError, ValueError):
        return default


def counters_of(tally: Tally, pushed: int, refused: dict[str, str], removed: int) -> dict[str, Any]:
    """The counters of S7's ``last_run``."""
    rejected = dict(tally.rejected)
    if refused:
        rejected["refused_by_zia"] = rejected.get("refused_by_zia", 0) + len(refused)
    return {
        "pulled": tally.pulled,
        "pushed": pushed,
        "rejected": sum(rejected.values()),
        "skipped": sum(tally.skipped.values()),
        "removed": removed,
        "skipped_by_reason": dict(tally.skipped),
        "rejected_by_reason": rejected,
    }


class Run:
    """The state of one run of one instance; :func:`sync_instance` drives it."""

    def __init__(self, rt: Runtime, name: str, *, dry_run: bool) -> None:
        self.rt = rt
        self.name = name
        self.inst = rt.config.instances[name]
        self.store = Store(rt.redis)
        self.ledger = Ledger(rt.redis)
        self.marks = ActivationMarks(rt.redis)
        self.dry_run = dry_run
        self.run_id = uuid.uuid4().hex[:12]
        self.tally = Tally()
        # One per run: its caches of decisions serve the whole window.
        self.extractor = Extractor(
            self.inst.sources, self.inst.allow, rt.config.settings.protected_hosts
        )
        self.pushed = 0
        self.removed = 0
        self.refused: dict[str, str] = {}
        self.sample: list[str] = []
        #: entry -> staged record time, or None when it is already in the category.
        self.seen: dict[str, float | None] = {}
        #: staged entries seen again with a newer record time, not yet restaged.
        self.newer: set[str] = set()
        self.new_in_dry_run = 0
        self.lock: RunLock | None = None

    # --- pulling -------------------------------------------------------------------------

    def _take_page(
        self,
        page: list[Any],
        extract: Callable[[Any, Tally], list[str]],
        time_field: str,
        default_time: float,
    ) -> None:
        timed: dict[str, float] = {}
        for record in page:
            when = _record_time(record, time_field, default_time)
            for entry in extract(record, self.tally):
                if timed.get(entry, -1.0) < when:
                    timed[entry] = when
        if not timed:
            return
        # Entries met earlier in this run need no look-up: a known one is still known, a
        # staged one only needs its newest record time, kept here and staged once at the end.
        seen = self.seen
        fresh, known = self.ledger.split_known(self.name, [e for e in timed if e not in seen])
        already = len(known)
        for entry, when in timed.items():
            if entry in seen:
                was = seen[entry]
                if was is None:
                    already += 1
                elif when > was:
                    seen[entry] = when
                    self.newer.add(entry)
        if already:
            self.tally.skipped["already_in_category"] += already
        if self.dry_run:
            self.new_in_dry_run += len(fresh)
            self.sample.extend(fresh[: max(0, SAMPLE - len(self.sample))])
        else:
            staged = {e: timed[e] for e in fresh}
            self.ledger.record_page(self.name, known, staged, self.rt.now())
        if len(seen) > SEEN_LIMIT:
            self.flush_newer()
            seen.clear()  # memory stays bounded whatever the backlog; look-ups resume
        seen.update(dict.fromkeys(known))
        seen.update((e, timed[e]) for e in fresh)

    def flush_newer(self) -> None:
        """Stage the newer record times of entries seen again during the pull."""
        if self.newer and not self.dry_run:
            times = {e: t for e in self.newer if (t := self.seen.get(e)) is not None}
            self.ledger.stage(self.name, times)
        self.newer.clear()

    def pull(self, window: Window, deadline: Deadline) -> None:
        client = self.rt.mimecast_client(self.inst.mimecast, deadline)
        end_ts = window.end.timestamp()
        try:
            if URL_SOURCES & set(self.inst.sources):
                for page in client.url_log_pages(window.start, window.end):
                    self._take_page(page, self.extractor.url_record, "date", end_ts)
            if "malicious_domains" in self.inst.sources:
                for page in client.impersonation_log_pages(window.start, window.end):
                    self._take_page(page, self.extractor.impersonation_record, "eventTime", end_ts)
            self.flush_newer()
        finally:
            # Page entries that were not even JSON objects never reach the extractor.
            if client.malformed_records:
                self.tally.pulled += client.malformed_records
                self.tally.rejected["malformed_record"] += client.malformed_records
            client.close()

    # --- pushing -------------------------------------------------------------------------

    def push(self, state: InstanceState, deadline: Deadline) -> None:
        if self.ledger.staged_count(self.name) == 0:
            return
        tenant = self.rt.config.zia[self.inst.zia]
        # Recorded before the first change, so a crash after it still gets activated.
        self.marks.mark_unactivated(tenant.tenant_id)
        client = self.rt.zia_client(self.inst.zia, deadline)

        def landed(batch: list[str]) -> None:
            self.marks.mark_unactivated(tenant.tenant_id)
            self.ledger.record_pushed(self.name, batch, self.rt.now())
            self.pushed += len(batch)

        try:
            # A known id is used as it is (no look-up call, S11); if ZIA says it is gone, the
            # category is found or created again.
            category_id = state.category_id or self._resolve(client)
            for attempt in range(2):
                try:
                    batches = self.ledger.staged_newest_first(self.name, self.inst.batch_size)
                    _, refused = client.add_batches(
                        category_id, self.inst.category, batches, landed
                    )
                    break
                except CategoryGone:
                    if attempt:
                        raise
                    # Everything the deleted category held goes into the new one.
                    self.ledger.restage_pushed(self.name)
                    category_id = self._resolve(client)
            self.refused.update(refused)
            self.ledger.clear_staged(self.name)
        finally:
            if client.last_quota is not None:
                quota = client.last_quota
                self.store.set_quota(tenant.tenant_id, quota.used, quota.remaining, self.rt.now())
            client.close()

    def withdraw(self, state: InstanceState, deadline: Deadline) -> None:
        """Remove from the category what the configuration now says must not be there (an
        entry newly on the allow list or under a protected host). Checked when the
        configuration changed, not on every run."""
        if state.category_id is None:
            return
        gone = [e for e in self.ledger.entries(self.name) if self.extractor.withdrawn(e)]
        if not gone:
            return
        tenant = self.rt.config.zia[self.inst.zia]
        self.marks.mark_unactivated(tenant.tenant_id)
        client = self.rt.zia_client(self.inst.zia, deadline)
        try:
            self.removed = client.remove(
                state.category_id, self.inst.category, gone, self.inst.batch_size
            )
        finally:
            client.close()
        self.ledger.record_removed(self.name, gone)
        log.info("run.withdrawn", removed=self.removed)

    def _resolve(self, client: ZiaClient) -> str:
        category_id = client.find_or_create_category(
            self.inst.category, category_description(self.name, self.inst.description)
        )
        self.store.set_category(self.name, category_id)
        return category_id

    def counters(self) -> dict[str, Any]:
        return counters_of(self.tally, self.pushed, self.refused, self.removed)


def _alert(
    rt: Runtime, name: str, kind: str, state: InstanceState, error: dict[str, str] | None
) -> Alert:
    inst = rt.config.instances[name]
    return Alert(
        kind=kind,  # type: ignore[arg-type]
        instance=name,
        category=inst.category,
        zia_tenant=inst.zia,
        mimecast_account=inst.mimecast,
        code=(error or {}).get("code"),
        message=(error or {}).get("message"),
        since=state.error_since,
        bookmark=state.bookmark,
        recipients=recipients_for(rt.config, name),
    )


def sync_instance(rt: Runtime, name: str, *, dry_run: bool = False) -> RunResult:
    """Run instance ``name`` once. Never raises for an upstream failure: the outcome and the
    state it left are in the result (and in Redis)."""
    run = Run(rt, name, dry_run=dry_run)
    structlog.contextvars.bind_contextvars(instance=name, run_id=run.run_id)
    try:
        return _sync(rt, run)
    except (redis.RedisError, StoreUnavailable) as exc:
        # Nothing can be recorded without Redis; the next scheduled run repeats this one.
        log.warning("run.store_unavailable", error=type(exc).__name__)
        error = {"kind": "temporary", "code": "store_unavailable", "message": "Redis unavailable"}
        return RunResult(name, run.run_id, "retrying", "retrying", run.counters(), error)
    finally:
        structlog.contextvars.unbind_contextvars("instance", "run_id")


def _sync(rt: Runtime, run: Run) -> RunResult:
    name, inst, store = run.name, run.inst, run.store
    state = store.load(name)
    if not inst.enabled:
        if not run.dry_run:
            store.set_disabled(name)
        return RunResult(name, run.run_id, "disabled", "disabled")
    current = fingerprint(rt.config, name)
    if state.state == "halted" and state.halted_fingerprint == current and not run.dry_run:
        log.info("run.skipped", reason="halted", code=(state.last_error or {}).get("code"))
        return RunResult(name, run.run_id, "skipped_halted", "halted", error=state.last_error)
    now = rt.now()
    window = window_for(state, inst, rt, now)
    deadline = Deadline.after(rt.config.settings.run_deadline.total_seconds())
    if run.dry_run:
        run.pull(window, deadline)
        counters = run.counters()
        counters["would_push"] = run.new_in_dry_run
        return RunResult(name, run.run_id, "dry_run", state.state, counters, None, run.sample)

    run.lock = try_lock(rt.redis, name, rt.lock_lease)
    if run.lock is None:
        log.info("run.skipped", reason="locked")
        return RunResult(name, run.run_id, "skipped_locked", state.state)
    try:
        with run.lock.kept_alive():
            return _locked(rt, run, state, window, deadline, current)
    except ThreatshareError as exc:
        return _failed(rt, run, exc, current)
    except Exception as exc:  # a bug must not kill the fleet; it is logged with its traceback
        log.exception("run.internal_error")
        error = TemporaryError(f"internal error: {type(exc).__name__}", code="internal")
        return _failed(rt, run, error, current)
    finally:
        run.lock.release()


def _locked(
    rt: Runtime,
    run: Run,
    state: InstanceState,
    window: Window,
    deadline: Deadline,
    current: str,
) -> RunResult:
    """The run proper, while it holds the instance's lock."""
    name, store = run.name, run.store
    assert run.lock is not None
    store.begin(name, run.run_id, rt.now())
    log.info("run.start", window_from=to_iso(window.start), window_to=to_iso(window.end))
    run.ledger.clear_staged(name)
    if window.lost_from is not None:
        store.set_lost_span(name, window.lost_from, window.start)
    if state.fingerprint is not None and state.fingerprint != current:
        run.withdraw(state, deadline)
    if window.end > window.start:
        run.pull(window, deadline)
        run.push(state, deadline)
    bookmark = max(window.end, state.bookmark or window.end)
    if not store.finish_ok(name, run.lock, bookmark, rt.now(), current):
        raise ThreatshareError("the run lost its lock before it could move the bookmark")
    store.record_run(name, run.counters())
    log.info("run.ok", **{k: v for k, v in run.counters().items() if isinstance(v, int)})
    if state.halted_since is not None:
        Outbox(rt.redis).put(
            _alert(rt, name, "recovered", state, None), str(to_iso(state.error_since))
        )
    return RunResult(name, run.run_id, "ok", "ok", run.counters())


def _failed(rt: Runtime, run: Run, exc: ThreatshareError, current: str) -> RunResult:
    halt = isinstance(exc, PermanentError)
    error = exc.as_dict()
    store = run.store
    now = rt.now()
    counters = run.counters()
    store.record_run(run.name, counters)
    before = store.finish_error(run.name, error, now, halt=halt, fingerprint=current)
    after = store.load(run.name)
    if halt:
        log.error("run.halted", code=exc.code, error=exc.message)
        if before.state != "halted":  # one e-mail per incident; the outbox dedupes too
            Outbox(rt.redis).put(
                _alert(rt, run.name, "halted", after, error), str(to_iso(after.error_since))
            )
    else:
        log.warning("run.retrying", code=exc.code, error=exc.message)
    if isinstance(exc, QuotaExhausted):
        log.error("quota.exhausted", pushed=run.pushed)
    return RunResult(
        run.name, run.run_id, "halted" if halt else "retrying", after.state, counters, error
    )


def sync_all(rt: Runtime, names: Iterable[str], *, dry_run: bool = False) -> list[RunResult]:
    return [sync_instance(rt, name, dry_run=dry_run) for name in names]
