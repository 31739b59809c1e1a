"""Multi-turn conversations inside a comparison's text fields.

A prompt or a response that holds several turns (hh-rlhf, Chatbot Arena ``conversation_a``, TRL's
conversational DPO records) is stored as a JSON list of ``{"role", "content"}`` messages in the
same string field, so it survives comparisons.csv unchanged; `render_turns` shows it turn by turn
(``User: ...`` / ``Assistant: ...``) where prompts and checks need plain text. A single message is
stored as its plain content. Imports nothing else of icai.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Turn = tuple[str, str]
"""(role, content) of one message."""


def as_messages(value: Any) -> list[Turn] | None:
    """The turns of a list of ``{role, content}`` (or ShareGPT ``{from, value}``) messages; None for anything else."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    turns: list[Turn] = []
    for message in value:
        if not isinstance(message, dict):
            return None
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        turns.append((role, content))
    return turns


def encode_turns(turns: Sequence[Turn]) -> str:
    """Turns as one string field: a lone message's content, else a JSON list of messages."""
    if len(turns) == 1:
        return turns[0][1]
    return json.dumps([{"role": role, "content": content} for role, content in turns], ensure_ascii=False)


def decode_turns(text: str) -> list[Turn] | None:
    """The turns stored in a string by `encode_turns`; None when it holds plain text."""
    if not text.startswith("[{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    turns = as_messages(value)
    return turns if turns is not None and len(turns) > 1 else None


def render_turns(text: str) -> str:
    """Plain text for a model or a check: stored turns as ``Role: content`` paragraphs, other text unchanged."""
    turns = decode_turns(text)
    if turns is None:
        return text
    return "\n\n".join(f"{_role_label(role)}: {content}" for role, content in turns)


def split_conversations(first: Sequence[Turn], second: Sequence[Turn]) -> tuple[list[Turn], list[Turn], list[Turn]]:
    """Two conversations as (shared opening turns, rest of first, rest of second).

    The shared part ends before the first turn where they differ (as `icai.io` splits hh-rlhf transcripts
    at the last shared ``Assistant:``), so a multi-turn Arena pair keeps every later turn in its response.
    """
    n = 0
    while n < min(len(first), len(second)) - 1 and first[n] == second[n]:
        n += 1
    return list(first[:n]), list(first[n:]), list(second[n:])


def _role_label(role: str) -> str:
    return {"human": "User", "user": "User", "gpt": "Assistant", "assistant": "Assistant", "bot": "Assistant"}.get(
        role.lower(), role.capitalize()
    )
