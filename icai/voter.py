"""The one place that picks the voter for a run's options: embedding only, adaptive, cascade, or exhaustive LLM votes.

Used by the orchestrator (`icai.pipeline`) for the training and held-out votes and by the comparison of two runs
(`icai.analyses`), so the same options always vote the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from icai.adaptive import vote_adaptive
from icai.config import RunConfig
from icai.embed import Embedder
from icai.embed_vote import cascade_vote, vote_by_embedding
from icai.llm.base import Capabilities
from icai.llm.client import LLM
from icai.store import RunStore
from icai.style import is_style
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


def voter_judge(config: RunConfig, principles: Sequence[Principle]) -> str | None:
    """What the held-out "constitution" judge is when the votes did not all come from the LLM judge; None when they did.

    Embedding votes and exact style votes are nothing the LLM judge can follow from the principles' texts, so the
    constitution is then scored by its own votes on the held-out pairs, summed as selection sums them
    (`icai.evaluate.predict_from_votes`); this sentence says so under the scores.
    """
    style = [p for p in principles if is_style(p)]
    others = [p for p in principles if not is_style(p)]
    if config.vote_mode != "embedding" and not style:
        return None
    sources = []
    if others:
        sources.append(
            "embedding similarity for the proposed principles" if config.vote_mode == "embedding"
            else "the LLM's votes for the proposed principles"
        )
    if style:
        sources.append("exact feature counts for the style principles")
    what = f" ({'; '.join(sources)})" if sources else ""
    return (
        f"the constitution's own votes on the held-out pairs{what}, summed as selection sums them: "
        "the judge that follows these voters (a tie scores 0.5)"
    )


def resolve_voter(config: RunConfig, capabilities: Capabilities) -> RunConfig:
    """The config with `vote_mode="auto"` made "embedding" for a provider that declares `embedding_votes`.

    The run then records (config.json) and fingerprints the voter that actually voted; any other mode is kept.
    """
    if config.vote_mode == "auto" and capabilities.embedding_votes:
        return dataclasses.replace(config, vote_mode="embedding")
    return config
