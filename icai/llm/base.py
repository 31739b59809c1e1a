"""The provider protocol and the request / completion records.

A provider talks to one API and nothing else. Caching, retries, concurrency
and usage counting wrap it once, in `icai.llm.client.LLM`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from icai.errors import ConfigError as ConfigError  # re-exported: the old home of the errors
from icai.errors import LLMError as LLMError
from icai.errors import TransientError as TransientError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Request:
    """Everything that changes a model's output, and nothing else.

    `choices`, when set, asks the provider for the log-probability of each
    choice as the next token instead of (or besides) generated text.

    `branches`, with `choices`, asks for several scorings in one call: each branch
    text is appended in turn to the last message, and the choices are scored after
    each (`Completion.branch_logprobs`, in order). The messages are then a prefix the
    branches share, encoded once by providers that reuse it (`supports_branches`).
    """

    messages: tuple[Message, ...]
    max_tokens: int = 512
    temperature: float = 0.0
    json_schema: Mapping[str, Any] | None = None
    choices: tuple[str, ...] = ()
    seed: int | None = None
    branches: tuple[str, ...] = ()

    @classmethod
    def chat(cls, user: str, *, system: str | None = None, **options: Any) -> Request:
        msgs = ((Message("system", system),) if system else ()) + (Message("user", user),)
        return cls(messages=msgs, **options)

    @property
    def prompt_text(self) -> str:
        """All message contents joined; what fakes match against."""
        return "\n".join(m.content for m in self.messages)

    def branch(self, i: int) -> Request:
        """The unbranched request for branch i: its text appended to the last message."""
        *head, last = self.messages
        return replace(self, messages=(*head, Message(last.role, last.content + self.branches[i])), branches=())

    def cache_key(self, model: str) -> str:
        """Hash of model, messages and output-affecting options only."""
        payload = {
            "model": model,
            "messages": [[m.role, m.content] for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_schema": self.json_schema,
            "choices": list(self.choices),
            "seed": self.seed,
        }
        if self.branches:  # absent otherwise, so keys of unbranched requests stay as they were
            payload["branches"] = list(self.branches)
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    """Prompt tokens the provider served from its own prefix cache, where reported."""
    choice_logprobs: Mapping[str, float] | None = None
    branch_logprobs: tuple[Mapping[str, float] | None, ...] | None = None
    """For a request with `branches`: the choices' log-probabilities after each branch."""
    from_cache: bool = field(default=False, compare=False)
    """True when served by icai's response cache (no API call made)."""


@runtime_checkable
class Provider(Protocol):
    """One model behind one API. Implement `complete`; raise TransientError to be retried."""

    model: str
    """The full model spec, e.g. "openai/gpt-4o-mini"; part of the cache key."""

    def complete(self, request: Request) -> Completion: ...

    # Optional: `complete_many(requests: Sequence[Request]) -> list[Completion]`, the
    # completions of several requests in order, each equal to what `complete` returns
    # for it. A provider that can share work between requests (e.g. one forward pass
    # over prompts with a common prefix) defines it; `LLM.map` then sends uncached
    # requests in chunks. See `supports_batching`.


def supports_batching(provider: Provider) -> bool:
    """True when the provider has the optional `complete_many` method."""
    return callable(getattr(provider, "complete_many", None))


def supports_branches(provider: Provider) -> bool:
    """True when the provider answers a request with `branches` in one call (see `Request`)."""
    return bool(getattr(provider, "supports_branches", False))


def supports_logprobs(provider: Provider) -> bool:
    return bool(getattr(provider, "supports_choice_logprobs", False))


def user_text(messages: Sequence[Message]) -> str:
    return "\n".join(m.content for m in messages if m.role == "user")
