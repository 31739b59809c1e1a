"""The one place that picks the voter for a run's options: embedding only, adaptive, cascade, or exhaustive LLM votes.

Used by the orchestrator (`icai.pipeline`) for the training and held-out votes, by the comparison of two runs
(`icai.analyses`) and by `icai evaluate` (`held_out_judge`), so the same options always vote the same way and a
constitution is always scored by the judge that follows its voter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypedDict

from icai.adaptive import vote_adaptive
from icai.config import RunConfig
from icai.embed import Embedder
from icai.embed_vote import cascade_vote, vote_by_embedding
from icai.evaluate import Judgement, predict_from_votes
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


def voter_judge(config: RunConfig, principles: Sequence[Principle], *, pairs: str = "the held-out pairs") -> str | None:
    """What the held-out "constitution" judge is when the votes did not all come from the LLM judge; None when they did.

    Embedding votes and exact style votes are nothing the LLM judge can follow from the principles' texts, so the
    constitution is then scored by its own votes on the held-out pairs, summed as selection sums them
    (`icai.evaluate.predict_from_votes`); this sentence says so under the scores. `pairs` names the pairs scored.
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
        f"the constitution's own votes on {pairs}{what}, summed as selection sums them: "
        "the judge that follows these voters (a tie scores 0.5)"
    )


def resolve_voter(config: RunConfig, capabilities: Capabilities) -> RunConfig:
    """The config with `vote_mode="auto"` made "embedding" for a provider that declares `embedding_votes`.

    The run then records (config.json) and fingerprints the voter that actually voted; any other mode is kept.
    """
    if config.vote_mode == "auto" and capabilities.embedding_votes:
        return dataclasses.replace(config, vote_mode="embedding")
    return config


def recorded_voter(config: RunConfig, capabilities: Capabilities, recorded: str | None) -> RunConfig:
    """The voter to score a saved constitution with: the one its run recorded, else the one `config` resolves to.

    `recorded` is the vote mode in the constitution's metadata (`config.vote_mode` in constitution.json, which
    `run` records after `resolve_voter`): "embedding" makes `config` vote by embedding; an LLM mode ("auto", "generate",
    "logprob") keeps `config`'s LLM mode (the run's principles were voted by an LLM, so they are voted by the LLM
    given now, in its mode). Without one (a hand-written constitution, an older icai's), `resolve_voter` picks it
    from `config.vote_mode` and `capabilities`, as a run would.
    """
    if recorded == "embedding":
        return dataclasses.replace(config, vote_mode="embedding")
    if recorded in ("auto", "generate", "logprob"):
        return dataclasses.replace(config, vote_mode="auto") if config.vote_mode == "embedding" else config
    return resolve_voter(config, capabilities)


class HeldOutJudge(TypedDict):
    """The keywords of `icai.evaluate.evaluate` that choose the judge of its "constitution" line."""

    voter_judgements: list[Judgement] | None
    voter_judge: str | None


def held_out_judge(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    config: RunConfig,
    *,
    llm: LLM,
    embedder: Embedder,
    votes: Sequence[Vote] | None = None,
    pairs: str = "the held-out pairs",
) -> HeldOutJudge:
    """`icai.evaluate.evaluate`'s `voter_judgements` and `voter_judge`: a constitution's `principles` on `comparisons`.

    Both are None when the LLM judge follows the voter (`voter_judge`): the "constitution" line is then the LLM
    judge given the constitution's texts. Otherwise the line is the constitution's own votes on `comparisons`,
    summed (`icai.evaluate.predict_from_votes`), and `voter_judge` says so. `votes` are those votes where they
    were already made (a run's held-out votes, `icai.pipeline`); without them the principles are voted here with
    the configured voter (`vote_as_configured`, never adaptive; style principles exactly, by feature counts), and
    only when a voter judge is needed. `principles` must keep their origin: a style principle is known by it.
    `pairs` names `comparisons` in `voter_judge`'s sentence.
    """
    name = voter_judge(config, principles, pairs=pairs)
    if name is None:
        return HeldOutJudge(voter_judgements=None, voter_judge=None)
    if votes is None:
        votes = vote_as_configured(
            comparisons, principles, llm, embedder, config, llm_vote_mode(config, llm), adaptive=False
        )
    judgements = predict_from_votes([p.id for p in principles], votes, comparisons)
    return HeldOutJudge(voter_judgements=judgements, voter_judge=name)
