"""``threatshare unblock``: the false-positive button (docs/design.md#unblocking)."""

from __future__ import annotations

import argparse

from threatshare.commands.base import CONFIG_CODE, EXIT_FAILED, EXIT_OK, REDIS_CODE, Command
from threatshare.commands.reach import reached
from threatshare.config import Config


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
    from threatshare.ops.unblock import unblock_command

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
