"""Pure parsers from model text to principles, picks and verdicts.

Bad text never raises: a parser returns nothing (principles) or "invalid" (picks).
"""

from __future__ import annotations

import json
import re
from typing import Any

from icai.prompts import EXAMPLE_PRINCIPLES, FRAME
from icai.types import Pick

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_PLACEHOLDER = re.compile(r"<[^>]{0,40}>|\.\.\.|\bprinciple text\b|\byour (rule|principle)\b|\[[A-Z ]+\]", re.IGNORECASE)
_FRAME_RE = re.compile(r"^\s*(?:\d+[.)]\s*|[-*•]\s*)?[\"']?(select (?:the )?response that\b.*)$", re.IGNORECASE)

MIN_PRINCIPLE_WORDS = 7
"""The frame is four words; at least three more are needed to say something."""
MAX_PRINCIPLE_CHARS = 200


def _json_candidates(text: str) -> list[Any]:
    """Every JSON value that can be recovered from `text`, best first."""
    found: list[Any] = []
    chunks = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in chunks:
        for start, ch in enumerate(chunk):
            if ch not in "[{":
                continue
            try:
                value, _ = decoder.raw_decode(chunk[start:])
            except json.JSONDecodeError:
                continue
            found.append(value)
            break
    return found


def _strings_from_partial_list(text: str) -> list[str]:
    """Quoted strings from a JSON list cut off mid-way (a common max_tokens outcome)."""
    return [json.loads(f'"{s}"') for s in re.findall(r'"((?:[^"\\]|\\.){8,})"', text) if s.lower() != "principles"]


def clean_principle(text: str) -> str | None:
    """Normalise one proposed principle, or None when it is unusable.

    Rejects template echoes (placeholders, the worked example's rules), text
    that does not use the "Select the response that" frame, and fragments.
    """
    text = " ".join(str(text).split()).strip().strip("\"'")
    m = _FRAME_RE.match(text)
    if not m:
        return None
    text = m.group(1).strip().rstrip(",").strip("\"'")
    text = FRAME + text[len(re.match(r"select (?:the )?response that", text, re.IGNORECASE).group(0)) :]  # type: ignore[union-attr]
    if not text.endswith((".", "!", "?")):
        text += "."
    if _PLACEHOLDER.search(text) or len(text) > MAX_PRINCIPLE_CHARS:
        return None
    if len(text.split()) < MIN_PRINCIPLE_WORDS:
        return None
    if text.lower() in {p.lower() for p in EXAMPLE_PRINCIPLES}:
        return None
    return text


def parse_principles(text: str) -> list[str]:
    """Principles from a proposal answer: JSON (fenced, partial or bare) or framed lines."""
    raw: list[str] = []
    for value in _json_candidates(text):
        if isinstance(value, dict):
            value = value.get("principles", next((v for v in value.values() if isinstance(v, list)), []))
        if isinstance(value, list):
            raw.extend(str(v) for v in value if isinstance(v, str | int | float))
            break
    if not raw:
        raw = _strings_from_partial_list(text) or text.splitlines()
    out: list[str] = []
    for item in raw:
        cleaned = clean_principle(item)
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return out


_PICK_WORDS: dict[str, Pick] = {
    "a": "a",
    "response a": "a",
    "b": "b",
    "response b": "b",
    "neither": "neither",
    "none": "neither",
    "null": "neither",
    "tie": "neither",
    "both": "neither",
    "equal": "neither",
    "n/a": "neither",
    "not applicable": "neither",
}


def parse_pick(value: Any) -> Pick:
    """One answer ("A", "b", "Response B", "neither", None, ...) as a pick."""
    if value is None:
        return "neither"
    key = str(value).strip().strip("\"'.").lower()
    return _PICK_WORDS.get(key, "invalid")


def parse_votes(text: str, n_rules: int) -> list[Pick]:
    """Picks for rules 1..n from a vote answer; anything unreadable is "invalid"."""
    picks: list[Pick] = ["invalid"] * n_rules
    for value in _json_candidates(text):
        if isinstance(value, list) and len(value) == n_rules:
            value = {str(i): v for i, v in enumerate(value, start=1)}
        if isinstance(value, dict):
            lowered = {str(k).strip().lower(): v for k, v in value.items()}
            for i in range(n_rules):
                key = str(i + 1)
                for k in (key, f"rule {key}", f"rule_{key}"):
                    if k in lowered:
                        picks[i] = parse_pick(lowered[k])
                        break
            return picks
    # Fallback: lines like "1: A" or "2. neither"
    for m in re.finditer(r"^\s*(\d+)\s*[:.)-]\s*\"?([A-Za-z /]+?)\"?\s*,?\s*$", text, re.MULTILINE):
        i = int(m.group(1)) - 1
        if 0 <= i < n_rules:
            picks[i] = parse_pick(m.group(2))
    return picks


def parse_verdict(text: str) -> Pick:
    """A judge's answer {"preferred": "A"} as a pick; "invalid" when unreadable."""
    for value in _json_candidates(text):
        if isinstance(value, dict):
            lowered = {str(k).lower(): v for k, v in value.items()}
            if "preferred" in lowered:
                return parse_pick(lowered["preferred"])
    m = re.fullmatch(r"\s*(?:response\s+)?([ab])\s*\.?\s*", text, re.IGNORECASE)
    return parse_pick(m.group(1)) if m else "invalid"
