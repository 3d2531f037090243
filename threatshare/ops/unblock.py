"""``threatshare unblock`` (docs/design.md#unblocking): the false-positive button.

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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from threatshare.config import Config
from threatshare.errors import LockLost, ThreatshareError
from threatshare.http import Deadline, RetryPolicy, interactive
from threatshare.indicators.entry import NotAnEntry, entry_of
from threatshare.indicators.matching import blocks
from threatshare.runtime import Runtime
from threatshare.scrub import clean_text
from threatshare.state.ledger import Ledger
from threatshare.state.lock import RunLock, try_lock
from threatshare.state.store import Store
from threatshare.state.unblocked import (
    MAX_REASON,
    MAX_WHO,
    Matcher,
    UnblockList,
)
from threatshare.sync import halt_refused_tenants
from threatshare.sync.activation import activate_pending
from threatshare.sync.change import CategoryChange
from threatshare.timestamps import to_iso
from threatshare.zia.categories import names_us

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
            ours = names_us(content.description, name)
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
            unblocks.add(entries, rt.now(), reason, who)
            why = clean_text(reason, MAX_REASON)
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
                who=clean_text(who, MAX_WHO) or "unknown",
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


# --- the command (docs/design.md#unblocking): arguments, output, exit codes -----------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: An unblock removing more entries than this (or any --all) asks for --yes first.
CONFIRM_ABOVE = 100


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
    for wider in sorted(set(report.widened)):
        print(f"{report.instance}: also unblocked the wider entry {wider}")
    for wider in sorted(set(report.wider)):
        print(
            f"{report.instance}: still blocked by the wider entry {wider} "
            "(threatshare unblock --wider removes it too)"
        )
    if report.error:
        print(f"{report.instance}: {report.error}", file=sys.stderr)


def unblock_command(args: Any, config: Config, client: redis.Redis) -> int:
    """``threatshare unblock``: see :func:`unblock`; prints what was done."""
    chosen = _names_and_entries(args, config)
    if isinstance(chosen, str):
        return _fail(chosen)
    names, arguments = chosen
    # Someone waits for the answer: an unreachable ZIA is given up on within 30 s, and the
    # entries listed by then are removed by the next run.
    rt = Runtime(config, client, policy=interactive(RetryPolicy()))
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
        wider = bool(getattr(args, "wider", False))
        counts = preview(rt, names, entries, wider=wider)
        total = sum(counts.values())
        if (args.all or total > CONFIRM_ABOVE) and not getattr(args, "yes", False):
            where = ", ".join(f"{n} ({c})" for n, c in counts.items() if c) or "no instance"
            return _fail(
                f"unblock: this would remove {total} entries from {where}; "
                "run it again with --yes to go ahead",
                EXIT_FAILED,
            )
        wait = config.settings.run_deadline.total_seconds() + rt.lock_lease
        reports = unblock(rt, names, entries, reason=args.reason, lock_wait=wait, wider=wider)
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
    return EXIT_FAILED if any(r.error or r.wider for r in reports) else EXIT_OK
