"""``threatshare unblock`` (S7, S13): the false-positive button.

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
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from threatshare.alerts.message import clean_text
from threatshare.config import Config
from threatshare.errors import LockLost, ThreatshareError
from threatshare.http import Deadline
from threatshare.runtime import Runtime
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.ledger import Ledger
from threatshare.state.lifecycle import LifecycleRecord
from threatshare.state.lock import RunLock, try_lock
from threatshare.state.store import Store
from threatshare.state.unblocked import (
    MAX_REASON,
    Matcher,
    NotAnEntry,
    UnblockList,
    entry_of,
    wider_than,
)
from threatshare.sync import halt_refused_tenants
from threatshare.sync.activation import activate_pending
from threatshare.sync.lifecycle import names_us
from threatshare.timestamps import to_iso

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


def _remove(rt: Runtime, name: str, entries: list[str], lock: RunLock, report: Unblocked) -> None:
    """Remove from the category every entry at or under ``entries`` (one GET, then removals)."""
    inst = rt.config.instances[name]
    store, ledger = Store(rt.redis), Ledger(rt.redis)
    matches = Matcher(entries)
    own = [e for e in ledger.scan(name) if matches(e)]
    category_id = store.load(name).category_id
    if category_id is None:
        ledger.record_removed(name, lock, own)
        report.removed = own
        return
    tenant_id = rt.config.zia[inst.zia].tenant_id
    marks = ActivationMarks(rt.redis, rt.now)
    deadline = Deadline.after(rt.config.settings.run_deadline.total_seconds())
    client = rt.zia_client(inst.zia, deadline)
    try:
        content = client.read_category(category_id)
        targets = set(own)
        if content is not None:
            ours = names_us(content.description, name)
            known = set(own)
            for entry in content.urls:
                if matches(entry) and entry not in known:
                    (targets.add if ours else report.left_alone.append)(entry)
            for entry in entries:
                report.wider.extend(wider_than(entry, content.urls))
            targets &= set(content.urls)
        if targets:
            marks.mark_unactivated(tenant_id)
            client.remove(category_id, inst.category, sorted(targets), inst.batch_size)
            marks.mark_unactivated(tenant_id)
    finally:
        client.close()
    ledger.record_removed(name, lock, own)
    report.removed = sorted(targets)
    LifecycleRecord(rt.redis, name).add(unblocked_removed=len(report.removed))


def unblock_instance(
    rt: Runtime, name: str, entries: list[str], *, reason: str, who: str, lock_wait: float
) -> Unblocked:
    """Unblock ``entries`` (already normalised) in instance ``name``; see the module."""
    report = Unblocked(name, entries)
    lock = _lock(rt, name, lock_wait)
    try:
        with lock.kept_alive():
            unblocks = UnblockList(rt.redis, name)
            unblocks.add(entries, rt.now(), reason, who)
            why = clean_text(reason, MAX_REASON)
            log.info("unblock", instance=name, entries=len(entries), who=who, reason=why)
            try:
                _remove(rt, name, entries, lock, report)
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


def undo(rt: Runtime, name: str, entry: str) -> bool:
    """Take ``entry`` off the runtime allow list: a later record of it is pushed again."""
    done = UnblockList(rt.redis, name).undo(entry)
    if done:
        log.info("unblock.undone", instance=name, entry_count=1, who=who_am_i())
    return done


# --- the command (S7): arguments, output, exit codes ------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(message, file=sys.stderr)
    return code


def _names_and_entries(args: Any, config: Config) -> tuple[list[str], list[str]] | str:
    rest = list(args.args)
    if args.all:
        return sorted(config.instances), rest
    if not rest:
        return "unblock: name an instance (or use --all)"
    name, *entries = rest
    if name not in config.instances:
        return f"no instance {name!r} in the configuration"
    return [name], entries


def _print_list(rt: Runtime, names: list[str]) -> None:
    rows = [("INSTANCE", "ENTRY", "WHEN", "WHO", "REASON")]
    for name in names:
        for item in UnblockList(rt.redis, name).entries():
            rows.append((name, item.entry, to_iso(item.at) or "", item.who, item.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_report(report: Unblocked, category: str) -> None:
    if report.pending:
        entries = ", ".join(report.entries)
        print(f"{report.instance}: unblocked {entries}: {report.error}", file=sys.stderr)
        return
    state = "active in ZIA" if report.activated else "staged"
    print(
        f"{report.instance}: unblocked {', '.join(report.entries)}: {len(report.removed)} "
        f"entries removed from {category!r} ({state if report.removed else 'none held'})"
    )
    if report.left_alone:
        print(
            f"{report.instance}: {len(report.left_alone)} matching entries were left alone: the "
            "category's description does not name threatshare and this instance"
        )
    for wider in sorted(set(report.wider)):
        print(f"{report.instance}: still blocked by the wider entry {wider}")
    if report.error:
        print(f"{report.instance}: {report.error}", file=sys.stderr)


def unblock_command(args: Any, config: Config, client: redis.Redis) -> int:
    """``threatshare unblock``: see :func:`unblock`; prints what was done."""
    chosen = _names_and_entries(args, config)
    if isinstance(chosen, str):
        return _fail(chosen)
    names, arguments = chosen
    rt = Runtime(config, client)
    try:
        if args.list:
            _print_list(rt, names)
            return EXIT_OK
        if args.undo:
            entry = entry_of(args.undo)
            done = [n for n in names if undo(rt, n, entry)]
            for name in done:
                print(f"{name}: {entry} is off the runtime allow list; new records push it again")
            return EXIT_OK if done else _fail(f"{entry} is not on the runtime allow list", 1)
        if not arguments:
            return _fail("unblock: give at least one ENTRY (a URL, a host or a ZIA entry)")
        entries = list(dict.fromkeys(entry_of(a) for a in arguments))
        wait = config.settings.run_deadline.total_seconds() + rt.lock_lease
        reports = unblock(rt, names, entries, reason=args.reason, lock_wait=wait)
    except NotAnEntry as exc:
        return _fail(f"unblock: {exc}")
    except Busy as exc:
        return _fail(f"unblock: {exc}; nothing was changed", EXIT_FAILED)
    except ThreatshareError as exc:
        return _fail(
            f"unblock: {exc}; the entries already listed stay unblocked for every run, and the "
            "next run of each instance retries their removal from ZIA",
            EXIT_FAILED,
        )
    finally:
        rt.close()
    for report in reports:
        _print_report(report, config.instances[report.instance].category)
    return EXIT_FAILED if any(r.error for r in reports) else EXIT_OK
