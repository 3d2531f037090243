"""``threatshare unblock``: the false-positive button (docs/design.md#unblocking): its
arguments, output and exit codes; the operation is :mod:`threatshare.sync.unblock`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from threatshare.commands.base import CONFIG_CODE, EXIT_FAILED, EXIT_OK, REDIS_CODE, Command
from threatshare.commands.reach import reached
from threatshare.config import Config
from threatshare.errors import ThreatshareError
from threatshare.http import RetryPolicy, interactive
from threatshare.indicators.entry import NotAnEntry, entry_of
from threatshare.runtime import Runtime
from threatshare.state.unblocked import UnblockList
from threatshare.sync.unblock import Busy, Unblocked, preview, unblock, undo
from threatshare.timestamps import to_iso

EXIT_USAGE = 2
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


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", metavar="NAME ENTRY", help="instance, then entries")
    parser.add_argument("--reason", default="", metavar="TEXT", help="why (kept and logged)")
    parser.add_argument("--list", action="store_true", help="show the runtime allow list")
    parser.add_argument("--undo", metavar="ENTRY", help="take ENTRY off the runtime allow list")
    parser.add_argument("--all", action="store_true", help="every instance (asks for --yes)")
    parser.add_argument(
        "--wider",
        action="store_true",
        help="also unblock the entries that block ENTRY from above (its host, a wildcard, a "
        "shorter path)",
    )
    parser.add_argument(
        "--yes", action="store_true", help="go ahead with --all or more than 100 removals"
    )


def _unblock(args: argparse.Namespace, config: Config) -> int:
    with reached(config) as client:
        return unblock_command(args, config, client)


COMMAND = Command(
    name="unblock",
    summary="remove a false positive from a category now, and never push it again",
    description="unblock NAME ENTRY... [--reason TEXT] | NAME --list | NAME --undo ENTRY; with "
    "--all, every instance (and no NAME; asks for --yes). Each ENTRY (a URL, a host or an "
    "entry as ZIA shows it) is removed with every entry at or under it, the tenant is "
    "activated, and ENTRY stays on the instance's runtime allow list so that no run pushes it "
    "again. Entries that still "
    "block ENTRY from above are named (exit 1); --wider removes them too. More than 100 "
    "removals ask for --yes. An unreachable ZIA "
    "is given up on within 30 s; the next run of the instance finishes the removal.",
    examples=(
        'threatshare unblock impersonation partner-login.example --reason "vendor portal"',
        "threatshare unblock urls https://login.partner.example/reset --wider",
        "threatshare unblock --all partner.example --yes",
        "threatshare unblock impersonation --list",
        "threatshare unblock impersonation --undo partner-login.example",
    ),
    exit_codes=(
        (EXIT_OK, "removed and active in ZIA (or listed, or undone)"),
        (
            EXIT_FAILED,
            "the removal or activation waits for the next run, a run held the instance, a "
            "wider entry still blocks it, --yes is needed, or --undo found nothing to undo",
        ),
        CONFIG_CODE,
        REDIS_CODE,
    ),
    handler=_unblock,
    arguments=_arguments,
)
