"""The plain-text tables operators read (``status``, the ``run --once`` summary): left-aligned
columns two spaces apart, each as wide as its widest cell, no trailing spaces."""

from __future__ import annotations

from collections.abc import Sequence


def render_rows(rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a table whose first row is its header."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
