"""``threatshare --version``: the version, and the version or date of each data file shipped
in :mod:`threatshare.indicators` (protected hosts, public suffixes, wrappers, ...), read from
the file's own version or date line."""

from __future__ import annotations

import re
from importlib import metadata, resources

DATA_PACKAGE = "threatshare.indicators"
#: Only a file's head is read: a version line is at the top by convention.
HEAD_LINES = 40
_VERSION_LINE = re.compile(
    r"^\W*(?:version|date|updated|generated|last[- ]modified)\s*[:=]?\s+(\S.*?)\s*$",
    re.IGNORECASE,
)


def package_version() -> str:
    try:
        return metadata.version("threatshare")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def data_version(text: str) -> str:
    """The first version or date line of a data file's head, else ``undated``."""
    for line in text.splitlines()[:HEAD_LINES]:
        if match := _VERSION_LINE.match(line):
            return match.group(1)
    return "undated"


def version_text() -> str:
    lines = [f"threatshare {package_version()}", "shipped data:"]
    folder = resources.files(DATA_PACKAGE).joinpath("data")
    files = sorted(
        (f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")),
        key=lambda f: f.name,
    )
    width = max((len(f.name) for f in files), default=0)
    for file in files:
        with file.open("r", encoding="utf-8", errors="replace") as fh:
            head = "".join(line for _, line in zip(range(HEAD_LINES), fh, strict=False))
        lines.append(f"  {file.name.ljust(width)}  {data_version(head)}")
    return "\n".join(lines)
