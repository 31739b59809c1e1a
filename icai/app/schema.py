"""What the workbench accepts in a request: one schema per request body, bounded path parameters, a size limit.

Every malformed request is a RequestError with an HTTP status (4xx) and one sentence; nothing a client
sends reaches the workbench unchecked. Text fields are normalised (`icai.types.normalize_text`: NFKC,
format characters removed, lone surrogates refused) before anything checks, hashes or stores them.
No web imports: the HTTP layer (icai.app.server) reads the bytes and calls these functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

from icai.errors import DataError
from icai.types import normalize_text

MAX_BODY_BYTES = 64 * 1024
"""The largest request body read (a principle of 2,000 characters, all escaped, is 12 KB)."""

MAX_TEXT_CHARS = 3000
"""The longest text field before cleaning (the principle limit itself applies after whitespace is folded)."""

MAX_NOTE_CHARS = 2000
MAX_ID_CHARS = 128
MAX_IDS = 1000
"""The most principles a saved version may list."""

MAX_VERSION = 999_999
MAX_QUERY_CHARS = 2000


class RequestError(DataError):
    """A request the app refuses: its HTTP status (4xx) and one sentence."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


FieldKind = Literal["text", "id", "ids"]


@dataclass(frozen=True)
class Field:
    """One key of a JSON request body: its kind, whether it must be there, its longest length."""

    kind: FieldKind
    required: bool = False
    max_chars: int = MAX_TEXT_CHARS


BODIES: dict[str, dict[str, Field]] = {
    "estimate": {"text": Field("text", required=True)},
    "vote": {"text": Field("text", required=True), "replaces": Field("id", max_chars=MAX_ID_CHARS)},
    "save": {"ids": Field("ids", required=True, max_chars=MAX_ID_CHARS), "note": Field("text", max_chars=MAX_NOTE_CHARS)},
    "evaluate": {},
    "label": {"id": Field("text", required=True, max_chars=MAX_ID_CHARS), "label": Field("text", required=True, max_chars=8)},
    "undo": {},
}
"""The body of each write request: allowed keys and what each holds (null is as good as absent where optional)."""


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes, kind: str) -> dict[str, Any]:
    """The JSON object of a `kind` request body (`BODIES`), checked and with its text fields normalised."""
    fields = BODIES[kind]
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"the request body is larger than {MAX_BODY_BYTES // 1024} KB", 413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the request body is not UTF-8 text") from None
    if not text.strip():
        raise RequestError("the request body is empty; send a JSON object")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError("the request body nests too deeply to be a request of this app") from None
    except ValueError:  # JSONDecodeError, NaN, and integers past Python's digit limit
        raise RequestError("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    unknown = [k for k in data if k not in fields]
    if unknown:
        takes = ", ".join(fields) or "no fields"
        raise RequestError(f"unknown field {_shown(unknown[0])} in the request body; this request takes {takes}")
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        value = data.get(name)
        if value is None:
            if spec.required:
                raise RequestError(f"the request body needs the field {name!r}")
            out[name] = None
            continue
        out[name] = _field(name, value, spec)
    return out


def _field(name: str, value: Any, spec: Field) -> Any:
    if spec.kind == "ids":
        if not isinstance(value, list):
            raise RequestError(f"{name!r} must be a list of principle ids")
        if len(value) > MAX_IDS:
            raise RequestError(f"{name!r} may list at most {MAX_IDS:,} principles; it lists {len(value):,}")
        return [_text(f"each of {name!r}", item, spec.max_chars, what="a principle id") for item in value]
    what = "text" if spec.kind == "text" else "a principle id"
    return _text(repr(name), value, spec.max_chars, what=what)


def _text(label: str, value: Any, max_chars: int, *, what: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{label} must be {what} in a JSON string, not {_json_type(value)}")
    if len(value) > max_chars:
        raise RequestError(f"{label} may have at most {max_chars:,} characters; it has {len(value):,}")
    try:
        return normalize_text(value)
    except DataError as exc:
        raise RequestError(f"{label}: {exc}") from None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def version_number(value: str) -> int:
    """A version number path parameter: 1 to MAX_VERSION, digits only; else a 404."""
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_VERSION)) or not 1 <= int(value) <= MAX_VERSION:
        raise RequestError(f"no constitution version {_shown(value, 20)} in this run", 404)
    return int(value)


def page_number(value: str) -> int:
    """A page number query parameter: 1 to MAX_VERSION, digits only; else a 404."""
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_VERSION)) or not 1 <= int(value) <= MAX_VERSION:
        raise RequestError(f"no page {_shown(value, 20)} of versions", 404)
    return int(value)


def principle_id(value: str) -> str:
    """A principle id path parameter (at most MAX_ID_CHARS characters); else a 404."""
    if not value or len(value) > MAX_ID_CHARS:
        raise RequestError("no principle with this id in this run", 404)
    return normalize_or_404(value, "no principle with this id in this run")


_JOB_ID = re.compile(r"[0-9a-f]{1,32}")


def job_id(value: str) -> str:
    if not _JOB_ID.fullmatch(value):
        raise RequestError("no such job", 404)
    return value


def export_format(value: str, formats: Mapping[str, Any] | list[str] | tuple[str, ...]) -> str:
    if value not in formats:
        raise RequestError(f"unknown export format {_shown(value, 30)}; choose one of {', '.join(formats)}")
    return value


def normalize_or_404(value: str, message: str) -> str:
    try:
        return normalize_text(value)
    except DataError:
        raise RequestError(message, 404) from None


def subset_value(column: str, value: str) -> str:
    """The `where` query value that selects pairs whose metadata `column` is `value` (the column percent-quoted,
    so a column name holding "=" stays one column)."""
    return f"{quote(column, safe='')}={value}"


def parse_subset(where: str | None, columns: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """The (column, value) of a `where` query value (`subset_value`); None when there is none."""
    if not where:
        return None
    if len(where) > MAX_QUERY_CHARS:
        raise RequestError(f"the subset filter is longer than {MAX_QUERY_CHARS:,} characters")
    if "=" not in where:
        raise RequestError("the subset filter must read COLUMN=VALUE")
    quoted, value = where.split("=", 1)
    column = unquote(quoted)
    if column not in columns:
        raise RequestError(f"the comparisons have no metadata column {_shown(column)}")
    return column, value
