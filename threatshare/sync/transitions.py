"""The state machine of one instance (docs/design.md#error-policy, docs/design.md#alerts) and its
alert policy.

:func:`sync_instance` drives one :class:`~threatshare.sync.pipeline.Run` and decides what its
end means for the instance: a clean end moves the bookmark (fenced by the run lock) and, after a
halt, queues one "recovered" e-mail; a temporary error leaves it ``retrying`` with no e-mail; a
permanent one ``halted`` with one "halted" e-mail per incident. A halted instance is skipped
until its configuration changes or someone runs ``threatshare resume``. A run that lost its lock
(:class:`~threatshare.errors.LockLost`) records nothing at all: the instance is another run's
now, and that run's state stands.

"Now" is Mimecast's clock (docs/design.md#mimecasts-clock): a run reads it (asking Mimecast when
this process has no fresh reading) before it decides its window, and ``rt.now()`` reads the
instance's Mimecast account throughout the run. A bookmark later than Mimecast's now is not
trusted: the run shares again all that Mimecast keeps, sets the bookmark from Mimecast's clock,
and ends ``retrying`` with ``bookmark_in_future`` so that status shows what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, NoReturn

import structlog

from threatshare.alerts.message import Alert, recipients_for
from threatshare.alerts.outbox import Outbox
from threatshare.config import MIMECAST_RETENTION
from threatshare.errors import (
    LockLost,
    PermanentError,
    QuotaExhausted,
    StoreUnavailable,
    TemporaryError,
    ThreatshareError,
    redis_errors,
)
from threatshare.fingerprint import fingerprint
from threatshare.http import Deadline
from threatshare.runtime import Runtime
from threatshare.state.counters import RunCounters
from threatshare.state.lock import try_lock
from threatshare.state.store import InstanceState, Store
from threatshare.sync.activation import Activation
from threatshare.sync.pipeline import URL_SOURCES, Run
from threatshare.sync.window import CHUNK_SPAN, COMFORT, Window, chunks, next_span, window_for
from threatshare.timestamps import to_iso

log = structlog.get_logger(__name__)

#: The share of a run's deadline kept for pushing: pulling stops when only this much is left.
PUSH_RESERVE = 0.25
#: A bookmark ahead of Mimecast's now by at most this much is within the clock's own reading
#: error (one-second Date headers, the time an answer takes), not a bookmark in the future.
BOOKMARK_SLACK = timedelta(seconds=60)

#: How one run ended.
RunOutcome = Literal[
    "ok", "retrying", "halted", "skipped_halted", "skipped_locked", "disabled", "dry_run"
]


@dataclass
class RunResult:
    """What one run did: its outcome, the state it left, and its counters."""

    instance: str
    run_id: str
    outcome: RunOutcome
    state: str
    counters: RunCounters = field(default_factory=RunCounters)
    error: dict[str, str] | None = None
    would_push: list[str] = field(default_factory=list)  # dry run: a sample


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
        with redis_errors("run"), rt.clock.bound(run.inst.mimecast):
            result = _sync(rt, run)
    except StoreUnavailable as exc:
        # Nothing can be recorded without Redis; the next scheduled run repeats this one.
        log.warning("run.store_unavailable", error=type(exc).__name__)
        error = {"kind": "temporary", "code": "store_unavailable", "message": "Redis unavailable"}
        result = RunResult(name, run.run_id, "retrying", "retrying", run.counters(), error)
    finally:
        structlog.contextvars.unbind_contextvars("instance", "run_id")
    run.report("done", result.outcome)
    return result


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
    deadline = Deadline.after(rt.config.settings.run_deadline.total_seconds(), rt.monotonic)
    if run.dry_run:
        window = window_for(state, inst, rt.config.settings, _mimecast_now(rt, run, deadline))
        run.pull(window, deadline)
        counters = run.counters()
        counters.would_push = run.new_in_dry_run
        return RunResult(name, run.run_id, "dry_run", state.state, counters, None, run.sample)

    run.lock = try_lock(rt.redis, name, rt.lock_lease)
    if run.lock is None:
        log.info("run.skipped", reason="locked")
        return RunResult(name, run.run_id, "skipped_locked", state.state)
    try:
        with run.lock.kept_alive():
            return _locked(rt, run, state, deadline, current)
    except LockLost as exc:
        return _lost(run, exc)
    except ThreatshareError as exc:
        return _failed(rt, run, exc, current)
    except Exception as exc:  # a bug must not kill the fleet; it is logged with its traceback
        log.exception("run.internal_error")
        error = TemporaryError(f"internal error: {type(exc).__name__}", code="internal")
        return _failed(rt, run, error, current)
    finally:
        run.ledger.clear_staged(run.staging)  # this run's own key: nobody else's is touched
        run.lock.release()


def _mimecast_now(rt: Runtime, run: Run, deadline: Deadline) -> datetime:
    """Mimecast's now for the run's account, asked of Mimecast (for the kind of log the
    instance reads) when this process has no fresh reading."""
    kind = "url" if URL_SOURCES & set(run.inst.sources) else "impersonation"
    return rt.mimecast_now(run.inst.mimecast, deadline, kind)


def _locked(
    rt: Runtime,
    run: Run,
    state: InstanceState,
    deadline: Deadline,
    current: str,
) -> RunResult:
    """The run proper, while it holds the instance's lock."""
    name, store = run.name, run.store
    assert run.lock is not None
    store.begin(name, run.run_id, rt.now())
    now = _mimecast_now(rt, run, deadline)
    reading = rt.clock.reading(run.inst.mimecast)
    run.started = now
    store.set_clock(name, run.lock, now, reading.skew_seconds if reading else None)
    settings = rt.config.settings
    future = state.bookmark is not None and state.bookmark > now + BOOKMARK_SLACK
    if future:
        # Not trusted: what lies between the last true window's end and now is unknown, so
        # all that Mimecast keeps is shared again (pushing an entry twice is harmless).
        log.error("run.bookmark_in_future", bookmark=to_iso(state.bookmark), now=to_iso(now))
        window = Window(now - MIMECAST_RETENTION, now - settings.settle)
    else:
        window = window_for(state, run.inst, settings, now)
    log.info("run.start", window_from=to_iso(window.start), window_to=to_iso(window.end))
    run.ledger.migrate(name)
    if window.lost_from is not None:
        store.set_lost_span(name, window.lost_from, window.start)
    if state.fingerprint is not None and state.fingerprint != current:
        run.withdraw(state, deadline)
    run.honour_unblocks(state, deadline)
    if future:
        _repair_future_bookmark(run, state, window, deadline, now)  # ends with its error
    bookmark = _share_in_chunks(run, state, window, deadline, state.bookmark)
    if not store.finish_ok(name, run.lock, bookmark, rt.now(), current):
        raise LockLost("the run lost its lock before it could move the bookmark")
    store.record_run(name, run.counters(), outcome="ok", duration=run.duration())
    log.info("run.ok", **run.counters().totals())
    if state.halted_since is not None:
        Outbox(rt.redis).put(
            _alert(rt, name, "recovered", state, None), str(to_iso(state.error_since))
        )
    return RunResult(name, run.run_id, "ok", "ok", run.counters())


def _repair_future_bookmark(
    run: Run, state: InstanceState, window: Window, deadline: Deadline, now: datetime
) -> NoReturn:
    """Share ``window`` (all that Mimecast keeps) as if there were no bookmark, move the
    bookmark back to where that got from Mimecast's clock, and end the run with the error
    ``bookmark_in_future`` (temporary: the next run goes on from the new bookmark)."""
    assert run.lock is not None
    untrusted = state.bookmark
    bookmark = _share_in_chunks(run, state, window, deadline, None)
    if bookmark is not None:
        run.store.move_bookmark(run.name, run.lock, bookmark)
    got = f"set to {to_iso(bookmark)}" if bookmark else "kept until a chunk is shared"
    raise TemporaryError(
        f"the bookmark {to_iso(untrusted)} was later than Mimecast's now {to_iso(now)} (a "
        "worker's clock was ahead when it was set): not trusted; the last "
        f"{MIMECAST_RETENTION.days} days are shared again and the bookmark is {got}",
        code="bookmark_in_future",
    )


def _share_in_chunks(
    run: Run,
    state: InstanceState,
    window: Window,
    deadline: Deadline,
    bookmark: datetime | None,
) -> datetime | None:
    """Pull and push ``window`` chunk by chunk, oldest first, moving the bookmark after each
    fully shared chunk (docs/design.md#the-bookmark-and-the-window); stop at the deadline, checked
    between pages and between chunks. The chunk span adapts to what a run can pull
    (:func:`~threatshare.sync.window.next_span`). ``bookmark`` is where the instance's stands (None:
    none to keep). Returns the bookmark the run ends with (None: none yet, the window was not
    reached)."""
    assert run.lock is not None
    if window.end <= window.start:
        run.update_category(state, deadline, final=True)  # expiry does not wait for new threats
        return max(window.end, bookmark or window.end)
    # Pulling stops early enough to leave the end of the deadline to pushing what it found.
    reserve = (deadline.at - deadline.clock()) * PUSH_RESERVE
    pulling = Deadline(deadline.at - reserve, deadline.clock)
    budget = pulling.at - pulling.clock()
    span = state.chunk_span or CHUNK_SPAN
    pieces = chunks(window, span)
    pulled, comfortable = 0, True
    for number, chunk in enumerate(pieces, 1):
        began = pulling.clock()
        complete = run.pull(chunk, pulling)
        comfortable = comfortable and pulling.clock() - began <= budget * COMFORT
        # What was pulled is shared even when the pull was cut; the category's lifecycle
        # (reconcile, expiry) waits for the last chunk, so a catch-up expires nothing that a
        # later chunk would report again.
        run.update_category(state, deadline, final=complete and number == len(pieces))
        if not complete:
            break
        pulled += 1
        bookmark = max(chunk.end, bookmark or chunk.end)
        if number < len(pieces):
            run.store.move_bookmark(run.name, run.lock, bookmark)
            if pulling.expired:
                break
    stalled = pulled == 0
    adapted = next_span(span, stalled=stalled, comfortable=comfortable and pulled == len(pieces))
    if adapted != span:
        run.store.set_chunk_span(run.name, run.lock, adapted)
        log.info("run.chunk_span", seconds=adapted.total_seconds(), stalled=stalled)
    if pulled < len(pieces):
        log.info("run.cut_short", bookmark=to_iso(bookmark), window_to=to_iso(window.end))
    return bookmark


def _lost(run: Run, exc: LockLost) -> RunResult:
    """A run that lost its lock: it stops and writes nothing (another run has the instance)."""
    log.warning("run.lock_lost", error=exc.message, pushed=run.pushed)
    now_state = run.store.load(run.name).state
    return RunResult(run.name, run.run_id, "retrying", now_state, run.counters(), exc.as_dict())


def _failed(rt: Runtime, run: Run, exc: ThreatshareError, current: str) -> RunResult:
    halt = isinstance(exc, PermanentError)
    error = exc.as_dict()
    store = run.store
    now = rt.now()
    counters = run.counters()
    outcome = "halted" if halt else "retrying"
    store.record_run(
        run.name, counters, outcome=outcome, error_code=exc.code, duration=run.duration()
    )
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
    return RunResult(run.name, run.run_id, outcome, after.state, counters, error)


def halt_refused_tenants(rt: Runtime, activations: Iterable[Activation]) -> list[str]:
    """Halt the instances of every organisation whose activation ZIA refused for good (see
    :func:`halt_refused_tenant`); the instances halted now."""
    halted: list[str] = []
    for activation in activations:
        if activation.error and activation.error.get("code") == "activation_refused":
            halted += halt_refused_tenant(rt, activation.zia, activation.error)
    return halted


def halt_refused_tenant(rt: Runtime, zia: str, error: dict[str, str]) -> list[str]:
    """ZIA refused to activate the organisation of the ``[zia.zia]`` table for good: halt
    every enabled instance of that organisation (whichever table names it) with the refusal,
    one "halted" e-mail each, as any halt (docs/design.md#activation). An instance already
    halted keeps its own halt. One whose run is under way is left to that run, which would
    record its end over the halt: its changes are activated next, and a refusal halts it then.
    Returns the instances halted now."""
    tenant_id = rt.config.zia[zia].tenant_id
    store, now = Store(rt.redis), rt.now()
    halted = []
    for name in rt.config.enabled_instances():
        if rt.config.zia[rt.config.instances[name].zia].tenant_id != tenant_id:
            continue
        lock = try_lock(rt.redis, name, rt.lock_lease)
        if lock is None:
            continue
        try:
            if store.load(name).state == "halted":
                continue
            current = fingerprint(rt.config, name)
            before = store.finish_error(name, error, now, halt=True, fingerprint=current)
        finally:
            lock.release()
        after = store.load(name)
        log.error("run.halted", instance=name, code=error.get("code"), zia=zia)
        if before.state != "halted":
            Outbox(rt.redis).put(
                _alert(rt, name, "halted", after, error), str(to_iso(after.error_since))
            )
        halted.append(name)
    return halted


def sync_all(rt: Runtime, names: Iterable[str], *, dry_run: bool = False) -> list[RunResult]:
    return [sync_instance(rt, name, dry_run=dry_run) for name in names]
