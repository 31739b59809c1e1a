"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import openai

from icai.llm.base import Completion, ConfigError, Request, TransientError
from icai.llm.http_errors import redact, status_error

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

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"OpenAIProvider({self.name!r}{where})"

    def complete(self, request: Request) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": dict(request.json_schema), "strict": False},
            }
        if request.choices:
            kwargs.update(logprobs=True, top_logprobs=_TOP_LOGPROBS, max_tokens=1)

        try:
            response = self._client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
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
