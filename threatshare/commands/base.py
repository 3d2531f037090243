"""What every command is made of: its name, its help (a description, an example, its exit
codes), its arguments and its handler; and the exit codes they share.

A command is one small module of this package holding one :class:`Command`; :mod:`threatshare.cli`
lists the modules and builds the parser, the help and the completion scripts from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The command did what was asked.
EXIT_OK = 0
#: The command ran, and what it reports is a failure (an instance not ``ok``, a live check
#: that failed, an unblock still pending).
EXIT_FAILED = 1
#: The configuration is invalid, or the command line names something that does not exist.
EXIT_CONFIG = 2
#: Redis cannot be reached, or the embedded Redis's ``state_dir`` is in use by another process.
EXIT_UNREACHABLE = 3

CONFIG_CODE = (EXIT_CONFIG, "the configuration is invalid, or an argument is wrong")
UNEXPECTED_CODE = (EXIT_FAILED, "an unexpected error (said in one line)")
REDIS_CODE = (
    EXIT_UNREACHABLE,
    "Redis cannot be reached, or state_dir's embedded Redis is in use by another process",
)


@dataclass(frozen=True)
class Command:
    """One subcommand of ``threatshare``."""

    name: str
    #: One line, shown in ``threatshare --help``.
    summary: str
    #: What it does, shown in ``threatshare NAME --help``.
    description: str
    examples: tuple[str, ...]
    exit_codes: tuple[tuple[int, str], ...]
    handler: Callable[[argparse.Namespace, Any], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    #: False for the commands that read no configuration (``demo``, ``init``, ``completion``).
    needs_config: bool = True

    def epilog(self) -> str:
        """The help's tail: examples, then exit codes."""
        lines = ["examples:", *(f"  {example}" for example in self.examples), "", "exit codes:"]
        lines.extend(f"  {code}  {meaning}" for code, meaning in self.exit_codes)
        return "\n".join(lines)
