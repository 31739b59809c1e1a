"""LLM layer: `get_llm("provider/model")` is the only place that maps a model string to a provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icai.config import DEFAULT_MODEL  # the default of RunConfig.model, kept in the config module
from icai.executor import DEFAULT_SHARD_SIZE, Executor, WorkerRecipe
from icai.llm.base import (
    Capabilities,
    Completion,
    ConfigError,
    LLMError,
    Message,
    Provider,
    Request,
    TransientError,
    capabilities_of,
)
from icai.llm.cache import ResponseCache
from icai.llm.client import LLM, BudgetExceeded, Usage
from icai.llm.prices import Price, price_for
from icai.llm.registry import ENTRY_POINT_GROUP, build_provider, capabilities_for, register_provider

__all__ = [
    "DEFAULT_MODEL",
    "LLM",
    "ENTRY_POINT_GROUP",
    "BudgetExceeded",
    "Capabilities",
    "Completion",
    "ConfigError",
    "LLMError",
    "Message",
    "Provider",
    "Request",
    "ResponseCache",
    "TransientError",
    "Usage",
    "capabilities_for",
    "get_llm",
    "make_provider",
    "register_provider",
]


def make_provider(spec: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    """Build the provider named by "provider/model" (see `icai.llm.registry`)."""
    return build_provider(spec, base_url=base_url, timeout=timeout, **options)


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
    price: Price | None = None,
    **options: Any,
) -> LLM:
    """A ready LLM: provider plus cache, retries, concurrency, usage and cost counting.

    `executor` decides where `LLM.map` runs its shards (`icai.executor`); the LLM
    carries a recipe (spec and options, no budgets, no cache) for remote workers to
    rebuild the same provider. `price` (USD per 1M tokens) replaces the price table's, e.g. for a model served at
    a `base_url` other than its provider's API, whose price the table does not know.
    """
    provider = make_provider(spec, base_url=base_url, timeout=timeout, **options)
    cache = ResponseCache(cache_path) if cache_path is not None else None
    worker_options = {
        "base_url": base_url, "timeout": timeout, "max_attempts": max_attempts, "concurrency": concurrency, **options,
        # what the provider resolved here (a local model's dtype), so workers answer as it would
        **getattr(provider, "worker_options", {}),
    }  # fmt: skip
    recipe = WorkerRecipe("llm", spec, tuple(sorted(worker_options.items())), gpu=capabilities_of(provider).gpu)
    return LLM(
        provider,
        cache=cache,
        max_attempts=max_attempts,
        concurrency=concurrency,
        max_calls=max_calls,
        price=price if price is not None else price_for(provider.model, base_url=getattr(provider, "base_url", None) or base_url),
        max_cost=max_cost,
        progress=progress,
        executor=executor,
        recipe=recipe,
        shard_size=shard_size,
    )
