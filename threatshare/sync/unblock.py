"""Unblocking (docs/design.md#unblocking): the false-positive button; the command's shape
(arguments, output, exit codes) is :mod:`threatshare.commands.unblock`.

Each entry is put on the instance's runtime allow list first (so no run pushes it again from
that moment), then it and every entry at or under it are removed from the category and the
tenant is activated, all before the operation returns. When ZIA does not accept the removal
(an edit lock past the retries, a 5xx, the process killed), the entry stays pending on the
list and the instance's next run removes it (``Run.honour_unblocks``). The operation holds the
instance's run lock meanwhile, and a run reads the list once it holds that lock, so a run that
had already pulled the entry cannot push it back. Who (the OS user), when and why are kept with
the entry, logged, and written to the audit trail.

The category is read once (one GET), so entries in ZIA that the record lost are found too; an
entry in a category that is not this instance's (its description names neither this instance
nor a renamed one) is left alone (counted). Entries that still block an entry from *above*
(its host, a ``.domain`` wildcard, a shorter path, as ZIA matches) are named; with ``wider``
they are unblocked too.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from threatshare.errors import LockLost, ThreatshareError
from threatshare.http import Deadline
from threatshare.indicators.matching import blocks
from threatshare.runtime import Runtime
from threatshare.state.ledger import Ledger
from threatshare.state.lock import RunLock, try_lock
from threatshare.state.store import Store
from threatshare.state.unblocked import (
    Matcher,
    UnblockList,
)
from threatshare.sync import halt_refused_tenants
from threatshare.sync.activation import activate_pending
from threatshare.sync.change import CategoryChange
from threatshare.sync.lifecycle import owns

log = structlog.get_logger(__name__)

#: How often a waiting unblock tries the instance's run lock again.
LOCK_POLL = 0.2


class Busy(Exception):
    """The instance's run did not end in time for the unblock to take its lock."""


@dataclass
class Unblocked:
    """What one unblock did for one instance."""

    instance: str
    entries: list[str]
    removed: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    #: Entries that still block one of ``entries`` from above (not removed).
    wider: list[str] = field(default_factory=list)
    #: Entries above that ``--wider`` unblocked too.
    widened: list[str] = field(default_factory=list)
    #: The removal is active in ZIA (the tenant was activated).
    activated: bool = False
    #: ZIA did not accept the removal: it waits for the instance's next run.
    pending: bool = False
    error: str | None = None


def who_am_i() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "unknown"


def _lock(rt: Runtime, name: str, wait: float) -> RunLock:
    give_up = time.monotonic() + wait
    while True:
        lock = try_lock(rt.redis, name, rt.lock_lease)
        if lock is not None:
            return lock
        if time.monotonic() >= give_up:
            raise Busy(f"{name}: a run holds the instance; try again in a minute")
        rt.sleep(LOCK_POLL)


def _above(entries: list[str], candidates: list[str]) -> list[str]:
    """Those of ``candidates`` that block one of ``entries`` from above (its host, a wildcard
    over it, a shorter path), as ZIA matches them."""
    under = Matcher(entries)
    return sorted(
        c
        for c in set(candidates)
        if not under(c) and any(blocks(c, e.lstrip(".")) for e in entries)
    )


def _remove(
    rt: Runtime,
    name: str,
    entries: list[str],
    change: CategoryChange,
    report: Unblocked,
    wider: Callable[[list[str]], None] | None = None,
) -> None:
    """Remove from the category every entry at or under ``entries`` (one GET, then removals
    through the one path of changes). Entries that still block them from above (their host, a
    wildcard, a shorter path) are named in the report; with ``wider`` those of this instance
    are handed to it (put on the runtime allow list) and removed too."""
    inst = rt.config.instances[name]
    asked = entries
    recorded = list(change.ledger.scan(name))
    if wider is not None:
        above = _above(asked, recorded)
        if above:
            wider(above)
            entries = entries + above
    matches = Matcher(entries)
    own = [e for e in recorded if matches(e)]
    if change.category_id is None:
        change.remove(None, own, "unblocked")
        report.removed = own
        report.wider = _above(asked, [e for e in recorded if e not in set(own)])
        return
    deadline = Deadline.after(rt.config.settings.run_deadline.total_seconds())
    client = rt.zia_client(inst.zia, deadline)
    try:
        content = client.read_category(change.category_id)
        targets = set(own)
        in_zia: list[str] = []
        if content is not None:
            in_zia = content.urls
            ours = owns(content.description, name, rt.config.instances)
            extra = _above(asked, in_zia) if wider is not None and ours else []
            lost = [e for e in extra if e not in set(entries)]
            if lost:  # wider entries in ZIA that the record had lost
                wider(lost)
                matches = Matcher([*entries, *lost])
            known = set(own)
            for entry in in_zia:
                if matches(entry) and entry not in known:
                    (targets.add if ours else report.left_alone.append)(entry)
            targets &= set(in_zia)
        change.remove(client, sorted(targets), "unblocked")
    finally:
        client.close()
    change.forget([e for e in own if e not in targets])  # in the record, not in ZIA
    report.removed = sorted(targets)
    report.wider = [e for e in _above(asked, in_zia) if e not in targets]


def unblock_instance(
    rt: Runtime,
    name: str,
    entries: list[str],
    *,
    reason: str,
    who: str,
    lock_wait: float,
    wider: bool = False,
) -> Unblocked:
    """Unblock ``entries`` (already normalised) in instance ``name``; see the module. With
    ``wider``, the entries that block them from above are unblocked too."""
    report = Unblocked(name, entries)
    lock = _lock(rt, name, lock_wait)
    try:
        with lock.kept_alive():
            unblocks = UnblockList(rt.redis, name)
            why, who = unblocks.add(entries, rt.now(), reason, who)
            log.info("unblock", instance=name, entries=len(entries), who=who, reason=why)
            inst = rt.config.instances[name]
            change = CategoryChange(
                rt.redis,
                name=name,
                inst=inst,
                tenant_id=rt.config.zia[inst.zia].tenant_id,
                lock=lock,
                run_id=uuid.uuid4().hex[:12],
                now=rt.now,
                category_id=Store(rt.redis).load(name).category_id,
                audit_retention=rt.config.settings.audit_retention,
                who=who,
                why=why,
            )
            listed = list(entries)

            def also(more: list[str]) -> None:
                unblocks.add(more, rt.now(), reason, who)
                listed.extend(more)
                report.widened.extend(more)

            try:
                _remove(rt, name, entries, change, report, also if wider else None)
            except LockLost:
                raise
            except ThreatshareError as exc:
                # Listed and pending: no run pushes them, and the next run removes them.
                log.warning("unblock.removal_failed", instance=name, code=exc.code)
                report.pending = True
                report.error = (
                    f"the removal from ZIA failed ({exc.code}): {rt.scrub(exc.message, 200)}; "
                    "the entries are on the runtime allow list, and the next run of the "
                    "instance retries the removal"
                )
                return report
            unblocks.removed(lock, listed)
    finally:
        lock.release()
    return report


def unblock(
    rt: Runtime,
    names: list[str],
    entries: list[str],
    *,
    reason: str,
    lock_wait: float,
    wider: bool = False,
) -> list[Unblocked]:
    """Unblock ``entries`` in each instance of ``names``, then activate each changed tenant
    once: the entries are gone from what ZIA enforces when this returns."""
    who = who_am_i()
    reports = [
        unblock_instance(
            rt, name, entries, reason=reason, who=who, lock_wait=lock_wait, wider=wider
        )
        for name in names
    ]
    activations = activate_pending(rt)
    halt_refused_tenants(rt, activations)
    failed = {a.zia: a for a in activations if a.error}
    for report in reports:
        zia = rt.config.instances[report.instance].zia
        if zia in failed and report.error is None:
            code = (failed[zia].error or {}).get("code")
            report.error = (
                "ZIA refused the activation; the tenant's instances are halted"
                if code == "activation_refused"
                else f"activation failed ({code}); the next run activates the tenant"
            )
        report.activated = bool(report.removed) and zia not in failed
    return reports


def preview(rt: Runtime, names: list[str], entries: list[str], *, wider: bool) -> dict[str, int]:
    """How many entries of its record an unblock would remove from each instance (before
    acting: a large unblock asks for confirmation)."""
    ledger = Ledger(rt.redis)
    counts: dict[str, int] = {}
    for name in names:
        recorded = list(ledger.scan(name))
        chosen = entries + (_above(entries, recorded) if wider else [])
        matches = Matcher(chosen)
        counts[name] = sum(1 for e in recorded if matches(e))
    return counts


def undo(rt: Runtime, name: str, entry: str) -> bool:
    """Take ``entry`` off the runtime allow list: a later record of it is pushed again."""
    done = UnblockList(rt.redis, name).undo(entry)
    if done:
        log.info("unblock.undone", instance=name, entry_count=1, who=who_am_i())
    return done
