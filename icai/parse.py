"""Pure parsers from model text to principles, picks and verdicts.

Bad text never raises: a parser returns nothing (principles) or "invalid" (picks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from icai.prompts import EXAMPLE_DIFFERENCES, EXAMPLE_PRINCIPLES, FRAME
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


def clean_principle(text: str, *, min_words: int = MIN_PRINCIPLE_WORDS) -> str | None:
    """Normalise one proposed principle, or None when it is unusable.

    Rejects template echoes (placeholders, the worked example's rules), text
    that does not use the "Select the response that" frame, and fragments
    (fewer than `min_words` words, frame included).
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
    if len(text.split()) < min_words:
        return None
    if text.lower() in {p.lower() for p in (*EXAMPLE_PRINCIPLES, *EXAMPLE_DIFFERENCES)}:
        return None
    return text


_FRAME_PREFIX = re.compile(r"^\s*select (?:the )?response that\s+", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

GENERIC_WORDS = frozenset(
    """a an the and or but of to in on for with by as at from than that this these those it its is are be
    being was were has have had does do more most less much very really quite so also both each other
    than better best good great nice well overall generally properly clearly
    helpful helpfulness useful usefulness relevant relevance accurate accuracy correct correctly
    informative detailed detail details thorough comprehensive complete quality clear clarity
    appropriate appropriately specific engaging interesting effective effectively high higher
    response responses answer answers reply question prompt user person people preferred preference rule
    provides provide provided gives give offers offer contains contain includes include uses use
    information content explanation way approach manner""".split()
)
"""Words that say nothing concrete about a pair; a principle made only of them is generic."""


def principle_content(text: str) -> str:
    """The part after the "Select the response that" frame (the whole text when there is no frame)."""
    return _FRAME_PREFIX.sub("", text.strip(), count=1).strip().rstrip(".!?").strip()


def is_generic(principle: str) -> bool:
    """True when every word after the frame is in `GENERIC_WORDS` ("is more helpful and detailed")."""
    return all(w in GENERIC_WORDS for w in _TOKEN.findall(principle_content(principle).lower()))


def copies_text(principle: str, sources: Sequence[str], *, max_run: int = 5) -> bool:
    """True when the principle's content repeats more than `max_run` consecutive words of a source.

    Small models often paste a sentence of a response (or of the prompt) after the frame;
    such a principle restates one example instead of naming a reason.
    """
    words = _TOKEN.findall(principle_content(principle).lower())
    n = max_run + 1
    if len(words) < n:
        return False
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    for source in sources:
        tokens = _TOKEN.findall(source.lower())
        if any(tuple(tokens[i : i + n]) in grams for i in range(len(tokens) - n + 1)):
            return True
    return False


def parse_principles(text: str, *, min_words: int = MIN_PRINCIPLE_WORDS) -> list[str]:
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
        cleaned = clean_principle(item, min_words=min_words)
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return out


def parse_differences(text: str, *, min_words: int = MIN_PRINCIPLE_WORDS) -> list[tuple[str | None, str | None]]:
    """(rule for A, its opposite for B) per difference from a label-free proposal answer; unusable rules are None.

    Reads ``{"differences": [{"a": ..., "b": ...}, ...]}`` (fenced or bare); a flat list of framed rules, as a
    model may answer instead, gives one-sided differences (rule, None).
    """
    out: list[tuple[str | None, str | None]] = []
    for value in _json_candidates(text):
        if isinstance(value, dict):
            value = value.get("differences", next((v for v in value.values() if isinstance(v, list)), []))
        if not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, dict):
                a, b = item.get("a"), item.get("b")
                pair = (
                    clean_principle(a, min_words=min_words) if isinstance(a, str) else None,
                    clean_principle(b, min_words=min_words) if isinstance(b, str) else None,
                )
            elif isinstance(item, str):
                pair = (clean_principle(item, min_words=min_words), None)
            else:
                continue
            if pair != (None, None) and pair not in out:
                out.append(pair)
        if out:
            return out
    return [(rule, None) for rule in parse_principles(text, min_words=min_words)]


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
    if type(value) is str:
        known = _PICKS_SEEN.get(value)
        if known is not None:
            return known
    key = str(value).strip().strip("\"'.").lower()
    pick = _PICK_WORDS.get(key, "invalid")
    if type(value) is str and len(_PICKS_SEEN) < 4096:
        _PICKS_SEEN[value] = pick
    return pick


_PICKS_SEEN: dict[str, Pick] = {}
"""Answers already read (a run reads the same few millions of times)."""


def _plain_json(text: str) -> list[Any]:
    """[the value] when `text` is one JSON object or list and nothing else (the usual answer), else [].

    The same first candidate `_json_candidates` finds for such text, without scanning it for fences.
    """
    if text[:1] not in ("{", "[") or "```" in text:
        return []
    try:
        return [json.loads(text)]
    except ValueError:
        return []


def parse_votes(text: str, n_rules: int) -> list[Pick]:
    """Picks for rules 1..n from a vote answer; anything unreadable is "invalid"."""
    picks: list[Pick] = ["invalid"] * n_rules
    for value in _plain_json(text) or _json_candidates(text):
        if isinstance(value, list) and len(value) == n_rules:
            value = {str(i): v for i, v in enumerate(value, start=1)}
        if isinstance(value, dict):
            numbered = [str(i) for i in range(1, n_rules + 1)]
            if len(value) == n_rules and all(k in value for k in numbered):
                return [parse_pick(value[k]) for k in numbered]  # keys exactly "1".."n": as below, sooner
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
