"""Stage 4: per-principle statistics, filtering and ranking into a constitution."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from icai.stats import principle_stats
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote

log = logging.getLogger(__name__)


def rank_key(s: PrincipleStats) -> tuple[float, int, str]:
    """Strongest first: kappa x relevance, then more supporting votes, then id for stability."""
    return (-(s.strength or 0.0), -s.n_for, s.principle_id)


def select(
    principles: Sequence[Principle],
    comparisons: Sequence[Comparison],
    votes: Sequence[Vote],
    *,
    max_principles: int = 5,
    min_votes: int = 2,
    min_agreement: float = 0.5,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Constitution, list[PrincipleStats]]:
    """Rank principles by strength and keep the best `max_principles`.

    A principle qualifies when it took a side on at least `min_votes` pairs and
    agreed with the labels more often than `min_agreement`.
    Returns the constitution and the statistics of every principle.
    """
    stats = principle_stats(principles, comparisons, votes)
    by_id = {p.id: p for p in principles}
    qualified = [
        s
        for s in stats
        if s.n_for + s.n_against >= min_votes and s.agreement is not None and s.agreement > min_agreement
    ]
    chosen = sorted(qualified, key=rank_key)[:max_principles]
    log.info("select: %d of %d principles qualify; keeping %d", len(qualified), len(stats), len(chosen))
    constitution = Constitution(
        principles=tuple(by_id[s.principle_id] for s in chosen),
        stats=tuple(chosen),
        metadata=dict(metadata or {}),
    )
    return constitution, stats
