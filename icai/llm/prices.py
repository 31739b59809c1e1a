"""Model prices and token estimates: what the LLM client needs to count cost and keep a cost budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
"""A rough rule for English text with the OpenAI and Anthropic tokenizers."""

PRICES_AS_OF = "2026-11-26"
"""When the table below was written down, from the providers' published list prices
(standard tier, no batch or cache discounts). It was not re-checked online: confirm
current prices on the providers' pricing pages before relying on an estimate."""


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


PRICES: dict[str, Price] = {
    "openai/gpt-4o": Price(2.50, 10.00),
    "openai/gpt-4o-mini": Price(0.15, 0.60),
    "openai/gpt-4.1": Price(2.00, 8.00),
    "openai/gpt-4.1-mini": Price(0.40, 1.60),
    "openai/gpt-4.1-nano": Price(0.10, 0.40),
    "openai/gpt-5": Price(1.25, 10.00),
    "openai/gpt-5-mini": Price(0.25, 2.00),
    "openai/gpt-5-nano": Price(0.05, 0.40),
    "openai/o4-mini": Price(1.10, 4.40),
    "anthropic/claude-3-haiku": Price(0.25, 1.25),
    "anthropic/claude-3-5-haiku": Price(0.80, 4.00),
    "anthropic/claude-haiku-4-5": Price(1.00, 5.00),
    "anthropic/claude-3-5-sonnet": Price(3.00, 15.00),
    "anthropic/claude-3-7-sonnet": Price(3.00, 15.00),
    "anthropic/claude-sonnet-4": Price(3.00, 15.00),
    "anthropic/claude-opus-4": Price(15.00, 75.00),
    "anthropic/claude-opus-4-5": Price(5.00, 25.00),
}
"""Keyed by "provider/model"; a dated or suffixed name ("-2024-07-18", "-latest") uses the longest matching key."""

FREE_PROVIDERS = ("local", "fake")


API_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}
"""The hosts whose prices PRICES lists; the same model name served anywhere else has no known price."""


def price_for(model: str, *, base_url: str | None = None) -> Price | None:
    """The price of "provider/model"; free for local models and fakes, None when unknown.

    A `base_url` other than the provider's own API (a vLLM, llama.cpp or Ollama server, a proxy) is not priced as
    the hosted model: its price is unknown.
    """
    from urllib.parse import urlparse

    provider = model.partition("/")[0]
    if provider in FREE_PROVIDERS:
        return Price(0.0, 0.0)
    if base_url and urlparse(base_url).hostname != API_HOSTS.get(provider):
        return None
    matches = [key for key in PRICES if model == key or model.startswith(key + "-")]
    return PRICES[max(matches, key=len)] if matches else None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)
