"""Data placed inside HTML pages: JSON in a ``<script type="application/json">`` block that no text can leave.

An HTML parser ends a script element at ``</script``, and after ``<!--<script`` it ignores the next
``</script>`` (the "double-escaped" state of the HTML tokenizer), so a principle holding
``<!--<script>`` would swallow the page's own script. Escaping ``<``, ``>`` and ``&`` as JSON ``\\uXXXX``
escapes leaves no markup character in the block at all; U+2028 and U+2029 are escaped too, so the text
is also a valid JavaScript literal. Non-finite numbers become null: ``JSON.parse`` refuses ``NaN``.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_for_script(data: Any) -> str:
    """`data` as JSON text that holds no ``<``, ``>``, ``&``, U+2028 or U+2029 (all as ``\\uXXXX`` escapes)."""
    try:
        text = json.dumps(data, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), ensure_ascii=False, default=str, allow_nan=False)
    return text.translate(_SCRIPT_ESCAPES)


def json_script(element_id: str, data: Any) -> str:
    """A ``<script type="application/json">`` element holding `data`; read it with ``JSON.parse(el.textContent)``."""
    return f'<script type="application/json" id="{html.escape(element_id, quote=True)}">{json_for_script(data)}</script>'
