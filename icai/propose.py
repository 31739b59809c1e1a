"""Stage 1: candidate principles from comparisons, one call per pair."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from icai.llm.client import LLM
from icai.parse import parse_principles
from icai.prompts import propose_request
from icai.types import Comparison, Principle

log = logging.getLogger(__name__)


def propose(
    comparisons: Sequence[Comparison],
    llm: LLM,
    *,
    per_pair: int = 3,
    seed: int = 0,
) -> list[Principle]:
    """Ask the LLM why the preferred response won; unique principles with their source pairs.

    Proposals that echo the template, skip the "Select the response that" frame
    or are fragments are dropped (see `icai.parse.clean_principle`).
    """
    requests = [
        propose_request(c.prompt, c.text(c.preferred), c.text(c.rejected), n=per_pair, seed=seed)
        for c in comparisons
    ]
    completions = llm.map(requests, desc="propose")
    sources: dict[str, list[str]] = {}
    empty = 0
    for comparison, completion in zip(comparisons, completions, strict=True):
        texts = parse_principles(completion.text)[:per_pair]
        empty += not texts
        for text in texts:
            sources.setdefault(text, []).append(comparison.id)
    if empty:
        log.warning("propose: %d of %d pairs gave no usable principle", empty, len(comparisons))
    return [Principle.from_text(text, source_ids=ids) for text, ids in sources.items()]
