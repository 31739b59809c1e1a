"""LLM layer: `get_llm("provider/model")` is the only place that maps a model string to a provider."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icai.executor import DEFAULT_SHARD_SIZE, Executor, WorkerRecipe
from icai.llm.base import (
    Completion,
    ConfigError,
    LLMError,
    Message,
    Provider,
    Request,
    TransientError,
)
from icai.llm.cache import ResponseCache
from icai.llm.client import LLM, BudgetExceeded, Usage
from icai.llm.prices import price_for

DEFAULT_MODEL = "local/smollm2"

__all__ = [
    "DEFAULT_MODEL",
    "LLM",
    "BudgetExceeded",
    "Completion",
    "ConfigError",
    "LLMError",
    "Message",
    "Provider",
    "Request",
    "ResponseCache",
    "TransientError",
    "Usage",
    "get_llm",
    "make_provider",
]


def make_provider(spec: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    """Build the provider named by "provider/model"."""
    provider, sep, name = spec.partition("/")
    if not sep or not name:
        raise ConfigError(f"model {spec!r} must look like 'provider/model', e.g. 'openai/gpt-4o-mini' or 'local/smollm2'")
    if provider == "openai":
        from icai.llm.openai_provider import OpenAIProvider

        return OpenAIProvider(name, base_url=base_url or os.environ.get("OPENAI_BASE_URL"), timeout=timeout, **options)
    if provider == "anthropic":
        from icai.llm.anthropic_provider import AnthropicProvider

        return AnthropicProvider(name, timeout=timeout, **options)
    if provider == "local":
        from icai.llm.local import LocalProvider

        return LocalProvider(name, **options)
    if provider == "fake":
        from icai.llm.fake import fake_provider

        return fake_provider(name, **options)
    raise ConfigError(f"unknown model provider {provider!r} in {spec!r}; use one of openai, anthropic, local, fake")


def get_llm(
    spec: str = DEFAULT_MODEL,
    *,
    base_url: str | None = None,
    cache_path: str | Path | None = None,
    concurrency: int = 1,
    max_attempts: int = 6,
    timeout: float = 60.0,
    max_calls: int | None = None,
    max_cost: float | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    **options: Any,
) -> LLM:
    """A ready LLM: provider plus cache, retries, concurrency, usage and cost counting.

    `executor` decides where `LLM.map` runs its shards (`icai.executor`); the LLM
    carries a recipe (spec and options, no budgets, no cache) for remote workers to
    rebuild the same provider.
    """
    provider = make_provider(spec, base_url=base_url, timeout=timeout, **options)
    cache = ResponseCache(cache_path) if cache_path is not None else None
    worker_options = {"base_url": base_url, "timeout": timeout, "max_attempts": max_attempts, "concurrency": concurrency, **options}
    recipe = WorkerRecipe("llm", spec, tuple(sorted(worker_options.items())), gpu=spec.startswith("local/"))
    return LLM(
        provider,
        cache=cache,
        max_attempts=max_attempts,
        concurrency=concurrency,
        max_calls=max_calls,
        price=price_for(provider.model),
        max_cost=max_cost,
        progress=progress,
        executor=executor,
        recipe=recipe,
        shard_size=shard_size,
    )
