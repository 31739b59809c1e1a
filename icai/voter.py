"""The one place that picks the voter for a run's options: embedding only, adaptive, cascade, or exhaustive LLM votes.

Used by the orchestrator (`icai.pipeline`) for the training and held-out votes and by the comparison of two runs
(`icai.analyses`), so the same options always vote the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from icai.adaptive import vote_adaptive
from icai.config import RunConfig
from icai.embed import Embedder
from icai.embed_vote import cascade_vote, vote_by_embedding
from icai.llm.client import LLM
from icai.store import RunStore
from icai.types import Comparison, Principle, Vote
from icai.vote import VoteMode, resolve_vote_mode, vote


def vote_as_configured(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    embedder: Embedder,
    config: RunConfig,
    mode: VoteMode,
    *,
    adaptive: bool,
    store: RunStore | None = None,
    name: str = "votes.csv",
) -> Sequence[Vote]:
    """Every (pair, principle) vote the config asks for: embedding only, adaptive, cascade, or exhaustive LLM voting.

    Exhaustive LLM votes come back as a `icai.votes.VoteTable`; with a `store`, its columns are memory-mapped in
    the run directory (`name`'s columns) and filled as the answers arrive.
    """
    if config.vote_mode == "embedding":
        return vote_by_embedding(comparisons, principles, embedder)
    if adaptive:
        return list(
            vote_adaptive(
                comparisons,
                principles,
                llm,
                k=config.max_principles,
                batch_size=config.vote_batch_size,
                mode=mode,
                confidence=config.confidence,
                min_pairs=config.min_pairs,
                seed=config.seed,
                both_orders=not config.adaptive_one_order,
            ).votes
        )
    if config.cascade:
        votes, _ = cascade_vote(comparisons, principles, llm, embedder, batch_size=config.vote_batch_size, mode=mode)
        return votes
    out = None
    if store is not None and comparisons and principles:
        out = store.vote_table(
            [c.id for c in comparisons], [p.id for p in principles], orders=2, margins=mode == "logprob", name=name
        )
    return vote(comparisons, principles, llm, batch_size=config.vote_batch_size, mode=mode, out=out)


def llm_vote_mode(config: RunConfig, llm: LLM) -> VoteMode:
    """The LLM vote mode; with vote_mode="embedding" the judge still needs one, so it is resolved as "auto"."""
    return resolve_vote_mode("auto" if config.vote_mode == "embedding" else config.vote_mode, llm)
