"""``threatshare unblock`` (docs/design.md#unblocking): the command's arguments, output and
exit codes; the operation is :mod:`threatshare.sync.unblock`. Only :mod:`threatshare.cli`
imports this module.
"""

from __future__ import annotations

import sys
from typing import Any

import redis

from threatshare.config import Config
from threatshare.errors import ThreatshareError
from threatshare.runtime import Runtime
from threatshare.state.unblocked import NotAnEntry, UnblockList, entry_of
from threatshare.sync.unblock import Busy, Unblocked, unblock, undo
from threatshare.timestamps import to_iso

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
