"""The one table renderer of status and the run summary."""

from __future__ import annotations

from threatshare.ops.table import render_rows


def test_columns_are_as_wide_as_their_widest_cell_with_no_trailing_space() -> None:
    """Cells are left-aligned two spaces apart; no line ends in a space."""
    lines = render_rows(
        [("NAME", "STATE", "NOTE"), ("a-long-name", "ok", ""), ("b", "halted", "x")]
    )
    assert lines == ["NAME         STATE   NOTE", "a-long-name  ok", "b            halted  x"]


def test_no_rows_no_lines() -> None:
    """An empty table renders as nothing rather than failing."""
    assert render_rows([]) == []
