"""Which provider a model string names: "provider/model" -> a Provider.

Three sources, looked up in this order:

1. providers registered in code with `register_provider` (the built-ins, `openai`,
   `anthropic`, `local` and `fake`, are registered here; their modules, and the SDKs
   behind them, are imported only when one is built);
2. the `icai.providers` entry-point group, so a provider can ship in its own
   distribution: in its pyproject.toml,

       [project.entry-points."icai.providers"]
       mycloud = "mycloud_icai:MyCloudProvider"

   makes `get_llm("mycloud/some-model")` call `MyCloudProvider("some-model",
   base_url=..., timeout=..., **options)`. An entry point is loaded only when its
   name is asked for; one named like a built-in is never used.

A factory is any callable `factory(name, *, base_url, timeout, **options) -> Provider`.
Its `Capabilities` are read from the provider it builds (`capabilities_of`); for
estimates made before any provider exists (`icai run --dry-run`) the registry also
keeps a static declaration: the `capabilities` given to `register_provider`, or else
the factory's own `capabilities` attribute (a provider class's class attribute),
or else the defaults.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from icai.llm.base import DEFAULT_CAPABILITIES, Capabilities, ConfigError, Provider

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "icai.providers"


class ProviderFactory(Protocol):
    def __call__(self, name: str, *, base_url: str | None, timeout: float, **options: Any) -> Provider: ...


StaticCapabilities = Capabilities | Callable[[str, "str | None"], Capabilities]
"""A capabilities record, or a function of (model name, base_url) that returns one."""


@dataclass(frozen=True)
class ProviderEntry:
    prefix: str
    factory: ProviderFactory
    capabilities: StaticCapabilities | None = None
    """What the provider declares before it is built; None: the factory's `capabilities` attribute, else defaults."""

    def static_capabilities(self, name: str, base_url: str | None) -> Capabilities:
        declared: Any = self.capabilities if self.capabilities is not None else getattr(self.factory, "capabilities", None)
        if isinstance(declared, Capabilities):
            return declared
        if callable(declared):
            result = declared(name, base_url)
            if isinstance(result, Capabilities):
                return result
        return DEFAULT_CAPABILITIES


_registry: dict[str, ProviderEntry] = {}
_lock = threading.Lock()


def register_provider(
    prefix: str, factory: ProviderFactory, *, capabilities: StaticCapabilities | None = None, replace: bool = False
) -> None:
    """Make `get_llm(f"{prefix}/<model>")` build its provider with `factory`.

    `capabilities`: what the provider can do, for estimates made before one is built
    (default: the factory's `capabilities` attribute, else none). A prefix already
    registered is refused unless `replace`.
    """
    if not prefix or "/" in prefix:
        raise ConfigError(f"a provider prefix must be a non-empty name without '/', not {prefix!r}")
    with _lock:
        if prefix in _registry and not replace:
            raise ConfigError(f"a provider named {prefix!r} is already registered; pass replace=True to override it")
        _registry[prefix] = ProviderEntry(prefix, factory, capabilities)


def unregister_provider(prefix: str) -> None:
    """Forget a provider registered in code (an entry point of that name becomes visible again)."""
    with _lock:
        _registry.pop(prefix, None)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def provider_names() -> list[str]:
    """Every provider prefix get_llm knows: registered ones, then installed entry points."""
    with _lock:
        names = list(_registry)
    names += sorted({ep.name for ep in _entry_points()} - set(names))
    return names


def provider_entry(prefix: str) -> ProviderEntry:
    """The registry entry for `prefix`, loading its entry point on first use."""
    with _lock:
        entry = _registry.get(prefix)
    if entry is not None:
        return entry
    found = [ep for ep in _entry_points() if ep.name == prefix]
    if not found:
        raise ConfigError(f"unknown model provider {prefix!r}; use one of {', '.join(provider_names())}")
    ep = found[0]
    try:
        factory = ep.load()
    except Exception as exc:  # a broken plugin is reported, not hidden behind "unknown provider"
        raise ConfigError(f"the provider {prefix!r} (entry point {ep.value!r}) could not be loaded: {exc}") from exc
    if not callable(factory):
        raise ConfigError(f"the provider {prefix!r} (entry point {ep.value!r}) is not callable")
    entry = ProviderEntry(prefix, factory)
    with _lock:
        # a concurrent register_provider of the same prefix wins
        return _registry.setdefault(prefix, entry)


def split_spec(spec: str) -> tuple[str, str]:
    """("provider", "model") from "provider/model"."""
    provider, sep, name = spec.partition("/")
    if not sep or not provider or not name:
        raise ConfigError(f"model {spec!r} must look like 'provider/model', e.g. 'openai/gpt-4o-mini' or 'local/smollm2'")
    return provider, name


def build_provider(spec: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    """The provider named by "provider/model", built by its registered factory."""
    prefix, name = split_spec(spec)
    return provider_entry(prefix).factory(name, base_url=base_url, timeout=timeout, **options)


def capabilities_for(spec: str, *, base_url: str | None = None) -> Capabilities:
    """What the provider of `spec` declares it can do, without building it (no key, no model load)."""
    prefix, name = split_spec(spec)
    return provider_entry(prefix).static_capabilities(name, base_url)


# The built-ins: each factory imports its module (and the SDK behind it) only when called.


def _openai_base_url(base_url: str | None) -> str | None:
    return base_url or os.environ.get("OPENAI_BASE_URL")


def _openai(name: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    from icai.llm.openai_provider import OpenAIProvider

    return OpenAIProvider(name, base_url=_openai_base_url(base_url), timeout=timeout, **options)


def _openai_capabilities(name: str, base_url: str | None) -> Capabilities:
    from icai.llm.openai_provider import openai_capabilities

    return openai_capabilities(_openai_base_url(base_url))


def _anthropic(name: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    from icai.llm.anthropic_provider import AnthropicProvider

    # --base-url names an OpenAI-compatible server; it is not passed to the Anthropic API
    return AnthropicProvider(name, timeout=timeout, **options)


LOCAL_DTYPES = ("float32", "bfloat16", "float16")
"""Dtypes a local model spec may name after "@": "local/smollm2@bfloat16"."""


def _local(name: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    from icai.llm.local import LocalProvider

    stem, _, dtype = name.rpartition("@")
    if stem and dtype in LOCAL_DTYPES:
        if options.get("dtype", "auto") not in ("auto", dtype):
            raise ConfigError(f"local/{name}: the spec names dtype {dtype}, the options {options['dtype']}")
        name, options = stem, {**options, "dtype": dtype}
    return LocalProvider(name, **options)


def _local_capabilities(name: str, base_url: str | None) -> Capabilities:
    from icai.llm.local import LOCAL_CAPABILITIES

    return LOCAL_CAPABILITIES


def _fake(name: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> Provider:
    from icai.llm.fake import fake_provider

    return fake_provider(name, **options)


register_provider("openai", _openai, capabilities=_openai_capabilities)
register_provider("anthropic", _anthropic, capabilities=DEFAULT_CAPABILITIES)
register_provider("local", _local, capabilities=_local_capabilities)
register_provider("fake", _fake, capabilities=DEFAULT_CAPABILITIES)
