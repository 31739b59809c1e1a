"""Principles a user brings: read from a file, tagged origin="user", never clustered away.

A principles file is plain text with one principle per line (blank lines and lines starting with
``#`` are skipped), or a JSON list of strings (or of objects with a ``"text"`` key).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from icai.errors import DataError
from icai.types import Principle, normalize_text

log = logging.getLogger(__name__)

USER_ORIGIN = "user"
"""`Principle.origin` of a principle the user gave (`icai run --principles`, `icai test`)."""

MAX_PRINCIPLE_CHARS = 1000
"""A longer line is more likely a pasted document than a principle; it is refused."""

_INJECTION = [
    (re.compile(r"\[/?\s*(prompt|preferred|other|response a|response b)\s*\]", re.I), "a prompt block tag such as [RESPONSE A]"),
    (
        re.compile(r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|prompt|above|previous)\b", re.I),
        "an instruction to ignore the annotator's instructions",
    ),
    (re.compile(r"\b(system prompt|you are now|new instructions?|act as)\b", re.I), "an instruction addressed to the model"),
    (re.compile(r"\b(always|only)\s+(answer|reply|respond|say|output)\b", re.I), "an instruction fixing the model's answer"),
    (re.compile(r"[{}]|\"\s*(preferred|[0-9]+)\"\s*:", re.I), "JSON, which is how the annotator answers"),
]
"""Patterns that make a text an instruction to the annotator rather than a principle about responses."""

_CONFUSABLES = str.maketrans(
    # Cyrillic letters that look like Latin ones
    "АВЕЅІЈКМНОРСТХУаеѕіјорсхуԁһӏԛԝ"
    # Greek letters that look like Latin ones
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ",
    "ABESIJKMHOPCTXYaesijopcxydhlqw"
    "ABEZHIKMNOPTYXaikvoptux",
)
"""Look-alike letters folded to Latin before the injection filter looks ("Іgnore" with a Cyrillic І is "Ignore")."""


def injection(text: str) -> str | None:
    """What in `text` reads as an instruction to the annotator rather than a principle (None: nothing).

    Look-alike Cyrillic and Greek letters are folded to Latin first; run `normalize_text` before, so
    zero-width characters and fullwidth letters are gone too. This is a courtesy check, not the defence:
    a principle reaches a prompt on a line it cannot end (`icai.prompts.rule_text`).
    """
    folded = text.translate(_CONFUSABLES)
    return next((what for pattern, what in _INJECTION if pattern.search(folded)), None)


def read_principles_file(path: str | Path) -> list[str]:
    """The principle texts of a file: one per line, or a JSON list; duplicates (ignoring case) kept once."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: principles file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a principles file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: principles file is not valid UTF-8 (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the principles file ({exc.strerror})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: looks like a JSON list but is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        texts = [_json_item(item, path, i) for i, item in enumerate(data, start=1)]
    else:
        texts = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return check_principle_texts(texts, source=str(path))


def _json_item(item: object, path: Path, index: int) -> str:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return str(item["text"]).strip()
    raise DataError(f"{path}: item {index} of the JSON list is neither a string nor an object with a 'text' string")


def check_principle_texts(texts: Iterable[str], *, source: str = "principles") -> list[str]:
    """Normalised (`normalize_text`), stripped, non-empty, distinct (ignoring case) principle texts; a DataError
    when none is left or one is too long."""
    out: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(texts, start=1):
        try:
            text = normalize_text(str(raw)).strip()
        except DataError as exc:
            raise DataError(f"{source}: principle {number}: {exc}") from None
        if not text:
            continue
        if len(text) > MAX_PRINCIPLE_CHARS:
            raise DataError(
                f"{source}: principle {number} is {len(text)} characters long (at most {MAX_PRINCIPLE_CHARS}); "
                "give one short rule per line"
            )
        key = text.lower()
        what = injection(text)
        if what is not None:
            log.warning("%s: principle %d contains %s; it is voted as written, but a principle should describe "
                        "the response to select, not instruct the annotator", source, number, what)
        if key not in seen:
            seen.add(key)
            out.append(text)
    if not out:
        raise DataError(f"{source}: no principles found; give one per line or a JSON list of strings")
    return out


def user_principles(texts: Sequence[str]) -> list[Principle]:
    """Principle records for user texts (normalised, `normalize_text`): origin "user", no cluster, in the given order."""
    return [Principle.from_text(normalize_text(t), origin=USER_ORIGIN) for t in texts]
