"""Terminal tables through rich: as wide as the terminal, cells wrapped inside their column instead of lines wrapped
by the terminal. Every table icai prints (validate, --dry-run, compare, --by) is rendered here.

The base layer: imports nothing of icai, so any module can render its table.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Sequence

DEFAULT_WIDTH = 100
"""Columns when there is no terminal to ask (a pipe, a notebook) and $COLUMNS is not set."""


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first, as `shutil.get_terminal_size` reads it), else DEFAULT_WIDTH."""
    return max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, 40)


def render_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
    numeric: Iterable[int] = (),
    wide: Iterable[int] = (0,),
    width: int | None = None,
) -> str:
    """A plain-text table that fits `width` (default: the terminal's) columns.

    numeric: columns right-aligned and kept on one line where they fit; wide: columns that take the spare width
    (long text, wrapped at word boundaries). Cells are plain text: brackets are never read as markup.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    numeric, wide = set(numeric), set(wide)
    table = Table(
        title=Text(title) if title else None, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
        pad_edge=False, collapse_padding=True, expand=False,
    )
    for i, name in enumerate(columns):
        table.add_column(
            Text(name), justify="right" if i in numeric else "left", overflow="fold",
            ratio=3 if i in wide else None, min_width=8 if i in wide else None,
        )
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width or terminal_width(), color_system=None, force_terminal=False, highlight=False,
        emoji=False, markup=False,
    )
    console.print(table)
    for note in notes:
        console.print(Text(note))
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())
