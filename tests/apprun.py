"""A finished fake run for the app's tests and benchmark: the keyword fake annotator and the hashing embedder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.llm import LLM, ResponseCache
from icai.llm.fake import fake_provider
from icai.pipeline import run
from icai.store import RunStore
from icai.types import Comparison


def keyword_llm(cache: ResponseCache | None = None) -> LLM:
    """A fresh keyword fake annotator (its provider records every request it gets); no cache unless given one
    (the app and a run directory set the run's)."""
    return LLM(fake_provider("keyword"), cache=cache, progress=False)


def with_group(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The pairs with a `group` metadata column (odd / even position), for the metadata filter."""
    return [
        dataclasses.replace(c, metadata={**c.metadata, "group": "odd" if i % 2 else "even"})
        for i, c in enumerate(comparisons)
    ]


def make_run(comparisons: Sequence[Comparison], out: Path, *, test_size: float = 0.3) -> Path:
    """Run the whole pipeline on `comparisons` with the fakes into `out` (a finished, unlocked run directory)."""
    llm = keyword_llm()
    from icai.llm import ResponseCache

    store = RunStore(out)
    llm.cache = ResponseCache(store.cache_path)
    try:
        run(
            comparisons,
            llm=llm,
            embedder=HashingEmbedder(),
            config=RunConfig(model="fake/keyword", embedder="hash", test_size=test_size, bootstrap=20, style_principles=False),
            store=store,
        )
    finally:
        llm.cache.close()
    return out
