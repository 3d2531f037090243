"""The ``threatshare`` command (docs/design.md#command-line).

``threatshare [--config PATH] COMMAND [--config PATH]``. Each command is a module of
:mod:`threatshare.commands` (its help, arguments and handler); this module lists them, builds
the parser, loads the configuration once and passes it down, and turns whatever fails under a
command into one line and the command's exit code (:mod:`threatshare.commands.failures`).
An invalid configuration prints one line per problem and exits 2. Nothing imports this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from threatshare import config as config_module
from threatshare import logs
from threatshare.collector import pace_collector
from threatshare.commands import (
    audit,
    check,
    completion,
    demo,
    explain,
    init,
    resume,
    run,
    scheduler,
    serve,
    status,
    unblock,
    worker,
)
from threatshare.commands.base import EXIT_CONFIG, EXIT_UNREACHABLE, Command
from threatshare.commands.failures import one_line
from threatshare.commands.version import version_text
from threatshare.config import ENV_PREFIX, Config
from threatshare.errors import ConfigError

#: Every command, in the order ``--help`` lists them. A new command: its module, one line here.
COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    worker.COMMAND,
    scheduler.COMMAND,
    status.COMMAND,
    resume.COMMAND,
    unblock.COMMAND,
    explain.COMMAND,
    audit.COMMAND,
    check.COMMAND,
    serve.COMMAND,
    demo.COMMAND,
    init.COMMAND,
    completion.COMMAND,
)

#: Set to show a Python traceback instead of the one line (for a bug report).
TRACEBACK_VARIABLE = "THREATSHARE_TRACEBACK"
#: What shtab completes a --config PATH with (its FILE), without importing shtab here.
_COMPLETE_FILES = {"bash": "_shtab_compgen_files", "zsh": "_files"}
_WIDTH = 78


class _Version(argparse.Action):
    """``--version``: computed only when asked (it reads the shipped data files' heads)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def _config_option(parser: argparse.ArgumentParser, default: Any) -> None:
    option = parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file (TOML); default $THREATSHARE_CONFIG, else ./threatshare.toml",
    )
    option.complete = _COMPLETE_FILES  # type: ignore[attr-defined]


def _fill(text: str) -> str:
    return textwrap.fill(text, _WIDTH)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (also what the completion scripts are made from)."""
    common = "\n".join(
        f"  {code}  {meaning}"
        for code, meaning in (
            (0, "success"),
            (1, "the command ran and reports a failure"),
            (EXIT_CONFIG, "the configuration is invalid, or an argument is wrong"),
            (EXIT_UNREACHABLE, "Redis cannot be reached, or state_dir is in use"),
        )
    )
    parser = argparse.ArgumentParser(
        prog="threatshare",
        description=_fill("Share Mimecast threats with a Zscaler ZIA custom URL category."),
        epilog="first steps:\n  threatshare demo\n  threatshare init\n\n"
        f"exit codes (each command's help has its own):\n{common}\n\n"
        "Whatever fails prints one line naming the cause and the place;\n"
        f"{TRACEBACK_VARIABLE}=1 shows the traceback instead.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="the version and the shipped data's dates"
    )
    _config_option(parser, None)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also log RQ's and HTTP libraries' own lines"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command_parser = sub.add_parser(
            command.name,
            help=command.summary,
            description=_fill(command.description),
            epilog=command.epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also after the command; SUPPRESS keeps a --config given before it.
        _config_option(command_parser, argparse.SUPPRESS)
        command.arguments(command_parser)
    return parser


def _problems_header(path: object, problems: list[str]) -> str:
    count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
    if all(problem.startswith(ENV_PREFIX) for problem in problems):
        return f"the environment: invalid configuration ({count})"
    return f"{path}: invalid configuration ({count})"


def load_config(path: str | None) -> Config:
    """The configuration, or SystemExit(2) after printing every problem."""
    resolved = config_module.resolve_path(path)
    try:
        return config_module.load(resolved)
    except ConfigError as exc:
        print(_problems_header(resolved, exc.problems), file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def main(argv: Sequence[str] | None = None) -> int:
    pace_collector()  # every command: a run, a worker, the scheduler, the endpoint
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser  # `completion` prints the script of this very parser
    command = next(c for c in COMMANDS if c.name == args.command)
    config: Config | None = None
    try:
        if command.needs_config:
            config = load_config(args.config)
        logs.configure(
            config.settings.log_format if config else "auto",
            third_party_level=logging.INFO if args.verbose else logging.WARNING,
        )
        return command.handler(args, config)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"), as a library may do
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        line, code = one_line(exc, config, command.name)
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
