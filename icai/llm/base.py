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


_SCHEMA_MARK = "\x00icai-json-schema\x00"
"""Stands for the schema in a cache key's JSON; the first match is replaced, and only "branches" and "choices" sort
before "json_schema", so a text would have to hold these NUL characters to be taken for it."""
_SCHEMA_TEXT: dict[int, tuple[Any, str]] = {}


def _schema_json(schema: Any) -> str:
    """json.dumps of a schema as cache_key writes it, remembered per object (the object is kept, so its id stays its own)."""
    known = _SCHEMA_TEXT.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    text = json.dumps(schema, sort_keys=True, ensure_ascii=False)
    if len(_SCHEMA_TEXT) >= 256:
        _SCHEMA_TEXT.clear()
    _SCHEMA_TEXT[id(schema)] = (schema, text)
    return text


@dataclass(frozen=True)
class Request:
    """Everything that changes a model's output, and nothing else.

    `choices`, when set, asks the provider for the log-probability of each
    choice as the next token instead of (or besides) generated text.

    `branches`, with `choices`, asks for several scorings in one call: each branch
    text is appended in turn to the last message, and the choices are scored after
    each (`Completion.branch_logprobs`, in order). The messages are then a prefix the
    branches share, encoded once by providers that reuse it (`Capabilities.branches`).
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
        if not self.json_schema:
            blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        else:
            # The schema is the same few objects on millions of vote requests: its JSON is made once per object
            # and put in place of a marker (json.dumps writes a nested value exactly as it writes it alone).
            payload["json_schema"] = _SCHEMA_MARK
            blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
            blob = blob.replace(json.dumps(_SCHEMA_MARK), _schema_json(self.json_schema), 1)
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


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, declared once; stages ask this record, never the model string.

    A provider exposes it as `provider.capabilities`; one that declares none gets
    these defaults (`capabilities_of`): plain `complete`, generated answers only.
    """

    choice_logprobs: bool = False
    """Answers a request with `choices` with their next-token log-probabilities."""
    logprobs_negotiated: bool = False
    """Whether log-probs come back is only known after asking (a compatible server); the
    provider then keeps the verdict in `logprobs_available` (`NegotiatesLogprobs`)."""
    logprob_votes: bool = False
    """`--vote-mode auto` votes with log-probs (after a probe when they are negotiated):
    a local model or a self-hosted server, not a metered API where each principle would
    cost a call of its own."""
    branches: bool = False
    """Answers a request with `branches` in one call (see `Request`)."""
    batching: bool = False
    """Has `complete_many(requests) -> list[Completion]` (`BatchingProvider`); `LLM.map`
    then sends uncached requests in chunks."""
    small_model: bool = False
    """A small model: `--propose-style auto` gives it the small-model prompts (icai.propose)."""
    embedding_votes: bool = False
    """`--vote-mode auto` votes by embedding similarity, not by this model (`icai.voter.resolve_voter`): for a model
    whose own votes measured worse than the embedder's (bench/offline_default.py); it still proposes and judges."""
    gpu: bool = False
    """Runs the model in the worker process: a Ray worker asks for a GPU when the cluster has one."""
    in_process: bool = False
    """Holds the model in this process: has `load()` and `forget_prefix()` (`InProcessProvider`)."""
    threads: bool = True
    """Its calls wait (on a network, a server): `LLM.map` runs `concurrency` of them at once on threads. False for a
    provider whose calls are CPU work in this process without a batch path (the fake annotator without a delay):
    threads would only take turns holding the interpreter lock, so its calls run one after another."""


DEFAULT_CAPABILITIES = Capabilities()


@runtime_checkable
class Provider(Protocol):
    """One model behind one API. Implement `complete`; raise TransientError to be retried.

    Declare what else it can do in a class or instance attribute
    `capabilities: Capabilities` (default: none of it; `capabilities_of`).
    """

    model: str
    """The full model spec, e.g. "openai/gpt-4o-mini"; part of the cache key."""

    def complete(self, request: Request) -> Completion: ...


class BatchingProvider(Provider, Protocol):
    """A provider with `Capabilities.batching`."""

    def complete_many(self, requests: Sequence[Request]) -> list[Completion]:
        """The completions of several requests in order, each equal to what `complete` returns for it.

        For a provider that can share work between requests (e.g. one forward pass
        over prompts with a common prefix).
        """
        ...


class InProcessProvider(Provider, Protocol):
    """A provider with `Capabilities.in_process`."""

    def load(self) -> None:
        """Load the model now rather than on the first call (a worker does this once, at start)."""
        ...

    def forget_prefix(self) -> None:
        """Drop reused state (a KV prefix), so the next call computes as on a fresh worker."""
        ...


class NegotiatesLogprobs(Provider, Protocol):
    """A provider with `Capabilities.logprobs_negotiated`."""

    logprobs_available: bool | None
    """None until a log-prob request settles whether the server returns log-probs."""


def capabilities_of(provider: Provider) -> Capabilities:
    """`provider.capabilities`, or the safe defaults when it declares none."""
    declared = getattr(provider, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else DEFAULT_CAPABILITIES


def missing_packages(modules: Sequence[str]) -> list[str]:
    """The import names among `modules` that are not installed (found without importing them)."""
    import importlib.util

    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def install_hint(extra: str) -> str:
    """The command that installs an optional extra of icai."""
    return f"pip install 'icai[{extra}]'"


def require_packages(what: str, modules: Sequence[str], *, extra: str) -> None:
    """Raise one ConfigError naming the missing packages and the extra that installs them."""
    missing = missing_packages(modules)
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; install with: {install_hint(extra)}")


def user_text(messages: Sequence[Message]) -> str:
    return "\n".join(m.content for m in messages if m.role == "user")
