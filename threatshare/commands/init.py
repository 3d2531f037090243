"""``threatshare init [PATH]``: a commented starter configuration, never over an existing file."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from threatshare import config as config_module
from threatshare.commands.base import EXIT_FAILED, EXIT_OK, Command

STARTER = "starter.toml"


def starter_text() -> str:
    """The configuration ``init`` writes: every option, commented, with the steps to
    production; its credentials are placeholders that ``check`` refuses until replaced."""
    return resources.files("threatshare.commands").joinpath(STARTER).read_text()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="where to write it (default: --config, $THREATSHARE_CONFIG, ./threatshare.toml)",
    )


def _init(args: argparse.Namespace, config: None) -> int:
    path = config_module.resolve_path(args.path or args.config)
    try:
        # O_EXCL: an existing file (or a link planted in its place) is never written through.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{path}: already exists; init never overwrites a file", file=sys.stderr)
        return EXIT_FAILED
    with os.fdopen(fd, "w") as fh:
        fh.write(starter_text())
    print(f"{path}: written (mode 0600). Next:")
    print("  1. replace every change-me and <...> in it (the steps are at its top)")
    print(f"  2. threatshare --config {path} check")
    print(f"  3. threatshare --config {path} check --live")
    print(f"  4. threatshare --config {path} run --once --dry-run")
    print(f"  5. threatshare --config {path} run")
    return EXIT_OK


COMMAND = Command(
    name="init",
    summary="write a commented starter configuration",
    description="Write a starter configuration with every option, commented, and the steps "
    "from it to production, readable by you only (0600). Its credentials are placeholders "
    "that `check` reports until you replace them. It never overwrites a file.",
    examples=("threatshare init", "threatshare init /etc/threatshare/threatshare.toml"),
    exit_codes=(
        (EXIT_OK, "written"),
        (EXIT_FAILED, "PATH already exists (nothing is written), or cannot be written"),
        (2, "an argument is wrong"),
    ),
    handler=_init,
    arguments=_arguments,
    needs_config=False,
)
