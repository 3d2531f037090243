"""Unblocking (docs/design.md#unblocking): the false-positive button; the command's shape is in
:mod:`threatshare.cli_unblock`.

Each entry is put on the instance's runtime allow list first (so no run pushes it again from
that moment), then it and every entry at or under it are removed from the category and the
tenant is activated, all before the command returns. When ZIA does not accept the removal
(an edit lock past the retries, a 5xx, the process killed), the entry stays pending on the
list and the instance's next run removes it (``Run.honour_unblocks``); the command says so
and exits 1. The command holds the instance's run lock meanwhile, and a run reads the list
once it holds that lock, so a run that had already pulled the entry cannot push it back. Who
(the OS user), when and why are kept with the entry and logged.

The category is read once (one GET), so entries in ZIA that the record lost are found too;
an entry in a category whose description does not name threatshare and this instance is not
threatshare's to remove and is left alone (counted). A wildcard over a parent domain that
still blocks an unblocked host is named, for the operator to decide.
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass, field

import structlog

from threatshare.errors import LockLost, ThreatshareError
from threatshare.http import Deadline
from threatshare.runtime import Runtime
from threatshare.state.lock import RunLock, try_lock
from threatshare.state.store import Store
from threatshare.state.unblocked import Matcher, UnblockList, wider_than
from threatshare.sync.change import CategoryChange
from threatshare.sync.lifecycle import owns
from threatshare.zia.activation import activate_pending

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
    wider: list[str] = field(default_factory=list)
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


def _remove(
    rt: Runtime, name: str, entries: list[str], change: CategoryChange, report: Unblocked
) -> None:
    """Remove from the category every entry at or under ``entries`` (one GET, then removals
    through the one path of changes)."""
    inst = rt.config.instances[name]
    matches = Matcher(entries)
    own = [e for e in change.ledger.scan(name) if matches(e)]
    if change.category_id is None:
        change.remove(None, own, "unblocked")
        report.removed = own
        return
    deadline = Deadline.after(rt.config.settings.run_deadline.total_seconds())
    client = rt.zia_client(inst.zia, deadline)
    try:
        content = client.read_category(change.category_id)
        targets = set(own)
        if content is not None:
            ours = owns(content.description, name, rt.config.instances)
            known = set(own)
            for entry in content.urls:
                if matches(entry) and entry not in known:
                    (targets.add if ours else report.left_alone.append)(entry)
            for entry in entries:
                report.wider.extend(wider_than(entry, content.urls))
            targets &= set(content.urls)
        change.remove(client, sorted(targets), "unblocked")
    finally:
        client.close()
    change.forget([e for e in own if e not in targets])  # in the record, not in ZIA
    report.removed = sorted(targets)


def unblock_instance(
    rt: Runtime, name: str, entries: list[str], *, reason: str, who: str, lock_wait: float
) -> Unblocked:
    """Unblock ``entries`` (already normalised) in instance ``name``; see the module."""
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
                who=who,
                why=why,
            )
            try:
                _remove(rt, name, entries, change, report)
            except LockLost:
                raise
            except ThreatshareError as exc:
                # Listed and pending: no run pushes them, and the next run removes them.
                log.warning("unblock.removal_failed", instance=name, code=exc.code)
                report.pending = True
                report.error = (
                    f"the removal from ZIA failed ({exc.code}); the entries are on the runtime "
                    "allow list, and the next run of the instance retries the removal"
                )
                return report
            unblocks.removed(lock, entries)
    finally:
        lock.release()
    return report


def unblock(
    rt: Runtime, names: list[str], entries: list[str], *, reason: str, lock_wait: float
) -> list[Unblocked]:
    """Unblock ``entries`` in each instance of ``names``, then activate each changed tenant
    once: the entries are gone from what ZIA enforces when this returns."""
    who = who_am_i()
    reports = [
        unblock_instance(rt, name, entries, reason=reason, who=who, lock_wait=lock_wait)
        for name in names
    ]
    failed = {a.tenant: a for a in activate_pending(rt) if a.error}
    for report in reports:
        tenant = rt.config.instances[report.instance].zia
        if tenant in failed and report.error is None:
            code = (failed[tenant].error or {}).get("code")
            report.error = f"activation failed ({code}); the next run activates the tenant"
        report.activated = bool(report.removed) and tenant not in failed
    return reports


def undo(rt: Runtime, name: str, entry: str) -> bool:
    """Take ``entry`` off the runtime allow list: a later record of it is pushed again."""
    done = UnblockList(rt.redis, name).undo(entry)
    if done:
        log.info("unblock.undone", instance=name, entry_count=1, who=who_am_i())
    return done
