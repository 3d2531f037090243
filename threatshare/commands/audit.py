"""``threatshare audit``: what threatshare changed in its categories
(docs/design.md#provenance-and-audit)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from threatshare.commands.base import CONFIG_CODE, EXIT_CONFIG, EXIT_OK, REDIS_CODE, Command
from threatshare.commands.reach import reached
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance", metavar="NAME", help="only this instance")
    parser.add_argument("--entry", metavar="E", help="only this entry (as ZIA shows it)")
    parser.add_argument("--since", metavar="DURATION", help="only changes this recent (24h, 7d)")
    parser.add_argument("--json", action="store_true", help="one JSON object a line (a SIEM)")


def _audit(args: argparse.Namespace, config: Config) -> int:
    from threatshare.durations import parse_duration
    from threatshare.ops.explain_text import render_audit
    from threatshare.state.audit import AuditTrail

    since = None
    if args.since:
        try:
            since = datetime.now(UTC) - parse_duration(args.since)
        except ValueError as exc:
            print(f"audit: --since {args.since!r}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.instance and args.instance not in config.instances:
        print(f"audit: no instance {args.instance!r} in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    with reached(config) as client:
        trail = AuditTrail(client, config.settings.audit_retention)
        lines = trail.read(instance=args.instance, entry=args.entry, since=since)
        for text in render_audit(lines, as_json=args.json):
            print(text)
    return EXIT_OK


COMMAND = Command(
    name="audit",
    summary="what threatshare changed in its categories, newest last",
    description="Every entry threatshare added to or removed from a category, one line each: "
    "added, expired, evicted, withdrawn, unblocked (with who and why), removed_by_hand, "
    "adopted, recreated, with the time and the run. Kept for settings.audit_retention.",
    examples=(
        "threatshare audit --instance urls --since 24h",
        "threatshare audit --entry login.evil.example --json",
    ),
    exit_codes=((EXIT_OK, "the trail was printed"), CONFIG_CODE, REDIS_CODE),
    handler=_audit,
    arguments=_arguments,
)
