"""Anthropic messages API, with the system prompt marked for prompt caching."""

from __future__ import annotations

import functools
import inspect
import json
import os
from typing import Any

from icai.llm.base import Capabilities, Completion, ConfigError, Request, TransientError, require_packages
from icai.llm.http_errors import redact, status_error


@functools.cache
def _sdk_takes_temperature() -> bool:
    """Recent SDKs (2.x) no longer offer `temperature`; send it only where the SDK does."""
    import anthropic

    return "temperature" in inspect.signature(anthropic.resources.messages.Messages.create).parameters


class AnthropicProvider:
    """One Anthropic model.

    Args:
        name: the model name, e.g. "claude-3-5-haiku-latest".
        base_url: another endpoint for the same API (tests, proxies).
        api_key: defaults to $ANTHROPIC_API_KEY.
        timeout: seconds per HTTP request.

    `Request.json_schema` is not sent: the prompts already ask for JSON.
    `Request.seed` is not sent (the API has none), nor `temperature` with SDKs that dropped it.
    """

    capabilities = Capabilities()
    """Generated answers only: the API returns no log-probabilities."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        **options: Any,
    ) -> None:
        require_packages(f"anthropic/{name}", ["anthropic"], extra="anthropic")
        import anthropic

        if options:
            raise ConfigError(f"anthropic/{name} takes no options {sorted(options)}; use base_url, api_key or timeout")
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(f"anthropic/{name} needs an API key: set ANTHROPIC_API_KEY")
        self.name = name
        self.model = f"anthropic/{name}"
        self.base_url = base_url
        self.timeout = timeout
        self._api_key = key
        # Retries live in icai.llm.client.LLM, once for every provider.
        self._client = anthropic.Anthropic(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.name!r})"

    def complete(self, request: Request) -> Completion:
        import anthropic

        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"]
        kwargs: dict[str, Any] = {
            "model": self.name,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if _sdk_takes_temperature():
            kwargs["temperature"] = request.temperature
        if system:
            # Every call of a stage shares its system prompt, so caching it pays off.
            kwargs["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]

        try:
            response = self._client.messages.create(**kwargs)
        except anthropic.APIStatusError as exc:
            raise status_error(self.model, exc.status_code, exc.response.headers, exc.message, self._api_key) from None
        except anthropic.APIConnectionError as exc:  # APITimeoutError included
            raise TransientError(f"{self.model}: {type(exc).__name__}: {redact(exc.message, self._api_key)}") from None
        except (json.JSONDecodeError, anthropic.APIResponseValidationError) as exc:
            # A body cut off in transit (or a proxy's error page) is worth another try.
            raise TransientError(f"{self.model}: the response body was not a message ({exc})") from None

        if not isinstance(getattr(response, "content", None), list):
            raise TransientError(f"{self.model}: the response body was not a message")
        texts = [block.text for block in response.content if getattr(block, "type", None) == "text"]
        if not texts:
            raise TransientError(f"{self.model}: the response had no text content (stop_reason={response.stop_reason})")
        usage = response.usage
        cache_read = usage.cache_read_input_tokens or 0
        cache_write = usage.cache_creation_input_tokens or 0
        return Completion(
            text="".join(texts),
            # Anthropic counts cached and cache-writing prompt tokens apart; icai's
            # input_tokens is the whole prompt, as OpenAI reports it.
            input_tokens=usage.input_tokens + cache_read + cache_write,
            output_tokens=usage.output_tokens,
            cached_input_tokens=cache_read,
        )
