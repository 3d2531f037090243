"""``threatshare check [--live]``: validate the configuration (and, live, the credentials)."""

from __future__ import annotations

import argparse

from threatshare import config as config_module
from threatshare.commands.base import CONFIG_CODE, EXIT_FAILED, EXIT_OK, REDIS_CODE, Command
from threatshare.commands.reach import reached
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--live", action="store_true", help="also get tokens and make one read call each"
    )


def counted(count: int, noun: str) -> str:
    """``1 instance``, ``2 instances``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _check(args: argparse.Namespace, config: Config) -> int:
    path = config_module.resolve_path(args.config)
    for warning in config_module.warnings_for(path, config):
        print(f"warning: {warning}")
    counts = (
        counted(len(config.instances), "instance"),
        counted(len(config.mimecast), "Mimecast account"),
        counted(len(config.zia), "ZIA tenant"),
    )
    print(f"{path}: valid ({', '.join(counts)})")
    from threatshare.indicators.rules import summary_lines

    # What is never blocked: each rule set's version and size, and what the configuration adds.
    for line in summary_lines(config):
        print(f"rules: {line}")
    for name, inst in sorted(config.instances.items()):
        if inst.allow:
            print(f"rules: instances.{name}.allow: {len(inst.allow)} entries")
    if not args.live:
        return EXIT_OK
    from threatshare.ops.live_check import check_live

    with reached(config) as client:  # ZIA calls go through the fleet's rate limiter
        results = check_live(config, client)
    for line in results.lines:
        print(line)
    return EXIT_OK if results.ok else EXIT_FAILED


COMMAND = Command(
    name="check",
    summary="validate the configuration",
    description="Validate the configuration offline and report every problem at once, one "
    "line each with its dotted path (or the environment variable it came from); warn of what "
    "is allowed but risky (world-readable secrets, no [smtp]). --live also gets a token and "
    "makes one read call against each Mimecast account and ZIA tenant, giving up on an "
    "unreachable host within 30 s.",
    examples=("threatshare check", "threatshare --config /etc/threatshare.toml check --live"),
    exit_codes=(
        (
            EXIT_OK,
            "the configuration is valid (and, with --live, every account and tenant answered)",
        ),
        (EXIT_FAILED, "--live: an account or tenant failed"),
        CONFIG_CODE,
        (REDIS_CODE[0], "--live: " + REDIS_CODE[1]),
    ),
    handler=_check,
    arguments=_arguments,
)
