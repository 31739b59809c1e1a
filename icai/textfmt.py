"""The package's one copy of each small text and number helper: one-line texts, missing cells, and the numbers,
intervals and escaped text that the report, the compare report and the workbench show.

Imports nothing else of icai, so every layer may use it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

DASH = "\u2014"
"""What a page shows for a number that is missing."""


def one_line(text: str, *, max_chars: int | None = None, printable: bool = False) -> str:
    """`text` on one line: runs of whitespace (newlines included) as one space, ends trimmed.

    printable: also drop characters that are neither printable nor whitespace (control and format characters);
    max_chars: cut the result to at most this many characters.
    """
    if printable:
        text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    line = " ".join(text.split())
    return line if max_chars is None else line[:max_chars]


def is_missing(value: Any) -> bool:
    """None or NaN (what pandas gives for an empty cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def escape(value: Any) -> str:
    """`value` as text safe inside HTML markup and quoted attributes."""
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals; a dash when missing, the escaped text when it is not a number."""
    if is_missing(value):
        return DASH
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return escape(value)


def p_value(value: Any) -> str:
    """A p- or q-value: scientific below 0.001, else three decimals; a dash when missing."""
    if is_missing(value):
        return DASH
    return f"{value:.1e}" if float(value) < 1e-3 else f"{float(value):.3f}"


def ci_pair(value: Any) -> tuple[float, float] | None:
    """A confidence interval as two floats, or None when `value` is not one."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(low) or math.isnan(high) else (low, high)
