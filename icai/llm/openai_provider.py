"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).

Compatible servers differ in what they take, so two things are negotiated once per
provider (that is, per run) and then remembered:

- the structured-output dialect (`STRUCTURED_FORMS`): `json_schema` (OpenAI, vLLM,
  llama.cpp's C++ server), else `json_object` with a `schema` field (llama-cpp-python),
  else no `response_format` at all (icai's prompts ask for JSON themselves). A server
  error whose message names `response_format`, whatever its status, moves to the next
  form inside the same call: it is no retry and costs no attempt.
- log-probabilities (`logprobs_available`): a server that rejects `logprobs` (an error
  naming it) or answers without them is marked as having none, said once, and every
  later log-prob request fails at once with an LLMError; `icai.vote.resolve_vote_mode`
  then votes with generated JSON instead.

While a dialect is unknown, requests that need it go one at a time (a lock), so a
thread pool meets each rejection once, not once per thread. The negotiated form is
not part of the cache key: keys are computed before any call (a cached run never
needs to negotiate), a server answers the same question the same way run after run,
and an answer obtained under a weaker form is still the answer to that request.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

import openai

from icai.llm.base import Completion, ConfigError, LLMError, Request, TransientError
from icai.llm.http_errors import redact, status_error

log = logging.getLogger(__name__)

StructuredForm = Literal["json_schema", "json_object", "prompt"]

STRUCTURED_FORMS: tuple[StructuredForm, ...] = ("json_schema", "json_object", "prompt")
"""The `response_format` dialects tried, in order; "prompt" sends none."""

_LOCAL_SERVER_KEY = "not-needed"
"""OpenAI-compatible local servers ignore the key, but the SDK insists on one."""

_TOP_LOGPROBS = 20


class OpenAIProvider:
    """One OpenAI (or OpenAI-compatible) chat model.

    Args:
        name: the model name the server knows, e.g. "gpt-4o-mini".
        base_url: an OpenAI-compatible endpoint such as "http://localhost:8000/v1".
        api_key: defaults to $OPENAI_API_KEY; not needed with a base_url.
        timeout: seconds per HTTP request.
    """

    supports_choice_logprobs = True

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        **options: Any,
    ) -> None:
        if options:
            raise ConfigError(f"openai/{name} takes no options {sorted(options)}; use base_url, api_key or timeout")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ConfigError(
                    f"openai/{name} needs an API key: set OPENAI_API_KEY or pass --base-url "
                    "for a local OpenAI-compatible server"
                )
            key = _LOCAL_SERVER_KEY
        self.name = name
        self.model = f"openai/{name}"
        self.base_url = base_url
        self.timeout = timeout
        self._api_key = key
        # the placeholder key for keyless local servers is no secret
        self._secret = "" if key == _LOCAL_SERVER_KEY else key
        # Retries live in icai.llm.client.LLM, once for every provider.
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.structured_output: StructuredForm | None = None
        """The structured-output form this server took; None until a request with a schema completes."""
        self.logprobs_available: bool | None = None
        """Whether this server returns next-token log-probabilities; None until a log-prob request settles it."""
        self._form_index = 0
        """The form being tried while `structured_output` is None."""
        self._negotiating = threading.Lock()

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"OpenAIProvider({self.name!r}{where})"

    def complete(self, request: Request) -> Completion:
        if request.choices and self.logprobs_available is False:
            raise LLMError(f"{self.model}: the server returns no log-probabilities; vote with --vote-mode generate")
        if not self._unsettled(request):
            return self._complete(request)
        with self._negotiating:
            # One request at a time while a dialect is unknown; a thread that waited
            # here finds it settled and goes on without the lock.
            while self._unsettled(request):
                try:
                    completion = self._complete(request)
                except _Rejected as exc:
                    self._fall_back(exc)
                    continue
                if request.json_schema is not None and self.structured_output is None:
                    self.structured_output = STRUCTURED_FORMS[self._form_index]
                    log.info("%s: structured output as %s", self.model, _describe(self.structured_output))
                return completion
        return self._complete(request)

    def _unsettled(self, request: Request) -> bool:
        """True when `request` needs a dialect this server has not settled yet."""
        return (request.json_schema is not None and self.structured_output is None) or (
            bool(request.choices) and self.logprobs_available is None
        )

    def _fall_back(self, rejected: _Rejected) -> None:
        """Move past the form the server rejected (called under the negotiation lock)."""
        if rejected.what == "response_format":
            self._form_index += 1
            log.warning(
                "%s: the server rejected response_format %s (%s); trying %s",
                self.model,
                STRUCTURED_FORMS[self._form_index - 1],
                rejected.detail,
                _describe(STRUCTURED_FORMS[self._form_index]),
            )
            return
        self.logprobs_available = False
        log.warning("%s: the server rejected logprobs (%s); log-prob votes fall back to generated votes", self.model, rejected.detail)
        raise LLMError(f"{self.model}: the server rejected logprobs ({rejected.detail})") from None

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_schema is not None:
            form = self.structured_output or STRUCTURED_FORMS[self._form_index]
            schema = dict(request.json_schema)
            if form == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": False},
                }
            elif form == "json_object":
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
        if request.choices:
            kwargs.update(logprobs=True, top_logprobs=_TOP_LOGPROBS, max_tokens=1)
        return kwargs

    def _complete(self, request: Request) -> Completion:
        kwargs = self._kwargs(request)
        try:
            response = self._client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            self._raise_if_rejected(kwargs, exc)
            raise status_error(self.model, exc.status_code, exc.response.headers, exc.message, self._secret) from None
        except openai.APIConnectionError as exc:  # APITimeoutError included
            raise TransientError(f"{self.model}: {type(exc).__name__}: {redact(exc.message, self._secret)}") from None
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            # A body cut off in transit (or a proxy's error page) is worth another try.
            raise TransientError(f"{self.model}: the response body was not a chat completion ({exc})") from None

        if not isinstance(getattr(response, "choices", None), list):
            raise TransientError(f"{self.model}: the response body was not a chat completion")
        if not response.choices:
            raise TransientError(f"{self.model}: the response had no choices")
        choice = response.choices[0]
        message = choice.message
        text = message.content if message.content is not None else getattr(message, "refusal", None)

        choice_logprobs: dict[str, float] | None = None
        if request.choices:
            top = _first_token_top_logprobs(choice.logprobs)
            if self.logprobs_available is None:
                self._settle_logprobs(top is not None)
            if top is None and text is None:
                raise TransientError(f"{self.model}: the response had neither content nor logprobs")
            if top is not None:
                choice_logprobs = match_choice_logprobs(request.choices, top)
                if text is None:
                    text = max(choice_logprobs, key=choice_logprobs.__getitem__)
        if text is None:
            raise TransientError(f"{self.model}: the response message had no content")

        usage = response.usage
        cached = 0
        if usage is not None and usage.prompt_tokens_details is not None:
            cached = usage.prompt_tokens_details.cached_tokens or 0
        return Completion(
            text=text,
            input_tokens=usage.prompt_tokens if usage is not None else 0,
            output_tokens=usage.completion_tokens if usage is not None else 0,
            cached_input_tokens=cached,
            choice_logprobs=choice_logprobs,
        )

    def _settle_logprobs(self, returned: bool) -> None:
        """The first log-prob answer decides (called under the negotiation lock)."""
        self.logprobs_available = returned
        if returned:
            log.info("%s: the server returns log-probabilities", self.model)
            return
        log.warning("%s: the server returned no log-probabilities; log-prob votes fall back to generated votes", self.model)
        raise LLMError(f"{self.model}: the server returned no log-probabilities")

    def _raise_if_rejected(self, kwargs: dict[str, Any], exc: openai.APIStatusError) -> None:
        """Raise _Rejected when an error names an option still being negotiated (any status)."""
        text = f"{exc.message} {exc.body}"
        detail = f"HTTP {exc.status_code}: {' '.join(redact(exc.message, self._secret).split())[:300]}"
        if "response_format" in kwargs and self.structured_output is None and "response_format" in text:
            raise _Rejected("response_format", detail) from None
        if "logprobs" in kwargs and self.logprobs_available is None and "logprobs" in text:
            raise _Rejected("logprobs", detail) from None


class _Rejected(Exception):
    """The server refused an option being negotiated; never leaves OpenAIProvider.complete."""

    def __init__(self, what: Literal["response_format", "logprobs"], detail: str) -> None:
        super().__init__(detail)
        self.what = what
        self.detail = detail


def _describe(form: StructuredForm) -> str:
    return {
        "json_schema": "response_format json_schema",
        "json_object": "response_format json_object with a schema",
        "prompt": "no response_format (the prompt alone asks for JSON)",
    }[form]


def match_choice_logprobs(choices: Sequence[str], top: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Log-probability of each choice among the first token's alternatives; -inf where absent.

    A token matches a choice when it equals it after stripping whitespace,
    case-sensitively if any token does, else case-insensitively.
    """
    result: dict[str, float] = {}
    for wanted in choices:
        target = wanted.strip()
        exact = [lp for tok, lp in top if tok.strip() == target]
        if not exact:
            exact = [lp for tok, lp in top if tok.strip().casefold() == target.casefold()]
        result[wanted] = max(exact) if exact else -math.inf
    return result


def _first_token_top_logprobs(logprobs: Any) -> list[tuple[str, float]] | None:
    content = getattr(logprobs, "content", None)
    if not content:
        return None
    first = content[0]
    top = [(alt.token, float(alt.logprob)) for alt in (first.top_logprobs or [])]
    # Some compatible servers return only the sampled token.
    top.append((first.token, float(first.logprob)))
    return top
