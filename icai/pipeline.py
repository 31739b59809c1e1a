"""The only orchestrator: runs the stages in order and checkpoints each one into the run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from icai._version import __version__
from icai.adaptive import vote_adaptive
from icai.cluster import cluster
from icai.embed import Embedder
from icai.embed_vote import CascadeStats, cascade_vote, vote_by_embedding
from icai.evaluate import (
    Evaluation,
    SelectionCurve,
    agreement_scores,
    evaluate,
    forward_select,
    predict_from_votes,
)
from icai.llm.client import LLM
from icai.prompts import MAX_RESPONSE_CHARS
from icai.propose import propose, resolve_propose_style
from icai.select import Selection, Stability, rank_key, select, selection_stability, significance_note
from icai.split import propose_pool, train_test_split
from icai.store import RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote
from icai.vote import VoteMode, resolve_vote_mode, vote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run. Stored with the result; a changed option re-runs the stages it affects."""

    model: str = "local/smollm2"
    embedder: str = "minilm"
    n_clusters: int = 40
    max_principles: int = 5
    proposals_per_pair: int = 3
    vote_batch_size: int = 40
    """Principles per voting call; 40 as in the reference implementation (bench/calls.py, docs/benchmarks.md).
    Log-prob votes batch only on providers that take branched requests (the local model)."""
    min_votes: int = 2
    seed: int = 0
    test_size: float = 0.0
    flip_check: bool = False
    curve_candidates: int = 10
    vote_mode: Literal["auto", "generate", "logprob", "embedding"] = "auto"
    """auto: log-prob A/B scoring for local models, generated JSON for API models;
    embedding: no LLM votes, cosine similarity of principle and responses (icai.embed_vote)."""
    adaptive: bool = False
    """Vote each principle only until its place in or out of the top max_principles is clear (icai.adaptive)."""
    confidence: float = 0.95
    """Adaptive voting: probability that all its confidence intervals hold."""
    min_pairs: int = 32
    """Adaptive voting: pairs every principle is tested on before any is stopped."""
    adaptive_one_order: bool = False
    """Adaptive voting: ask each pair once, in a seeded random order, instead of in both orders (half the calls);
    log-prob margins are then calibrated by each round's mean (icai.vote.calibrated_margins)."""
    propose_sample: int | None = None
    """Propose principles from this many training pairs (seeded sample); None: from all."""
    cascade: bool = False
    """Exhaustive LLM voting skips (pair, principle) items the embedder finds clearly irrelevant (icai.embed_vote)."""
    propose_style: Literal["auto", "standard", "small"] = "auto"
    """auto: "small" (contrastive hints, one sampled rule per call; icai.propose) for local models, else "standard"."""
    proposal_samples: int = 3
    """Small proposal style: calls per pair."""
    propose_fallback: bool = False
    """Small proposal style: a pair with no usable rule gets a code-written one, tagged origin="hint-fallback"
    (off by default: such rules are not a model's reading of the pair; `icai run --propose-fallback`)."""
    selection: Literal["greedy", "strength"] = "greedy"
    """greedy: add principles while they raise training agreement (icai.select); strength: the top max_principles."""
    min_gain: float = 0.01
    """Greedy selection: least rise in training agreement (and at least one pair's worth) for a principle to enter."""
    duplicate_agreement: float = 0.9
    """Two principles whose decisive votes agree on this share of the pairs both decided are duplicates."""
    alpha: float = 0.05
    """A principle is "significant" when its Benjamini-Hochberg q-value is below alpha, else "exploratory"."""
    bootstrap: int = 200
    """Bootstrap resamples of the training pairs for selection stability (cached votes; no model calls); 0: off."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunResult:
    constitution: Constitution
    candidates: tuple[Principle, ...]
    """Every proposed principle, with its cluster."""
    tested: tuple[Principle, ...]
    """The cluster representatives that were voted on."""
    stats: tuple[PrincipleStats, ...]
    votes: tuple[Vote, ...]
    train: tuple[Comparison, ...]
    test: tuple[Comparison, ...]
    evaluation: Evaluation | None = None
    flipped: RunResult | None = None
    usage: dict[str, int] = field(default_factory=dict)
    selection: Selection | None = None
    stability: Stability | None = None


def dataset_hash(comparisons: Sequence[Comparison]) -> str:
    h = hashlib.sha256()
    for c in comparisons:
        h.update(json.dumps([c.id, c.prompt, c.text_a, c.text_b, c.preferred]).encode("utf-8"))
    return h.hexdigest()[:16]


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(
    comparisons: Sequence[Comparison],
    *,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig = RunConfig(),
    store: RunStore | None = None,
) -> RunResult:
    """propose -> cluster -> vote -> select on the train split, then evaluate on the test split.

    With a store, each stage's output is saved and a rerun with the same data
    and options reuses it; LLM calls are cached in the store's cache, so an
    interrupted stage resumes without repeating completed calls.
    """
    if not comparisons:
        raise ValueError("no comparisons to learn from")
    n_long = sum(len(c.text_a) > MAX_RESPONSE_CHARS or len(c.text_b) > MAX_RESPONSE_CHARS for c in comparisons)
    if n_long:
        log.warning(
            "%d comparisons have a response longer than %d characters; prompts keep its first and last %d",
            n_long,
            MAX_RESPONSE_CHARS,
            MAX_RESPONSE_CHARS // 2,
        )
    train, test = train_test_split(comparisons, test_size=config.test_size, seed=config.seed)
    if store is not None:
        store.save_config({"config": config.to_dict(), "dataset_hash": dataset_hash(comparisons), "version": __version__})
        store.save_comparisons(train, test)

    result = _learn(train, llm, embedder, config, store)
    flipped: RunResult | None = None
    evaluation: Evaluation | None = None
    if test:
        if config.flip_check:
            flipped_train = [c.with_preferred(c.rejected) for c in train]
            flipped = _learn(flipped_train, llm, embedder, config, store.child("flipped") if store else None)
        evaluation = _evaluate(result, test, llm, config, store, flipped, embedder=embedder)

    metadata = {
        "config": config.to_dict(),
        "dataset_hash": dataset_hash(comparisons),
        "n_train": len(train),
        "n_test": len(test),
        "n_candidates": len(result.candidates),
        "n_tested": len(result.tested),
        "n_votes": len(result.votes),
        "n_invalid_votes": sum(v.value == "invalid" for v in result.votes),
        "n_invalid_picks": sum(p == "invalid" for v in result.votes for p in v.picks),
        "usage": llm.usage.as_dict(),
        "cost_usd": llm.cost_usd,
        "model": llm.model,
        "embedder": embedder.name,
        "version": __version__,
        "candidate_origins": {o: sum(p.origin == o for p in result.candidates) for o in sorted({p.origin for p in result.candidates})},
        "candidate_hints": {h or "none": sum(p.hint == h for p in result.candidates) for h in sorted({p.hint for p in result.candidates})},
        "notes": trust_notes(result.constitution, len(train), evaluation, alpha=config.alpha),
        "selection": result.selection.to_dict() if result.selection else None,
        "stability": result.stability.to_dict() if result.stability else None,
    }
    if config.cascade and config.vote_mode != "embedding":
        metadata["cascade"] = CascadeStats.from_votes(result.votes).to_dict()
    constitution = dataclasses.replace(result.constitution, metadata=metadata)
    if store is not None:
        store.save_constitution(constitution)
        store.save_principle_table(result.candidates, result.stats, constitution)
        if evaluation is not None:
            store.save_evaluation(
                {**evaluation.to_dict(), "stability": metadata["stability"], "notes": metadata["notes"]}
            )
    return dataclasses.replace(
        result,
        constitution=constitution,
        test=tuple(test),
        evaluation=evaluation,
        flipped=flipped,
        usage=llm.usage.as_dict(),
    )


def _learn(
    train: Sequence[Comparison], llm: LLM, embedder: Embedder, config: RunConfig, store: RunStore | None
) -> RunResult:
    data = dataset_hash(train)
    style = resolve_propose_style(config.propose_style, llm.model)
    small = [style, config.proposal_samples, config.propose_fallback, "form hints"] if style != "standard" else []
    fp_propose = _fingerprint(
        data, llm.model, config.proposals_per_pair, config.seed, *([config.propose_sample] if config.propose_sample else []), *small
    )
    if store is not None and store.is_done("propose", fp_propose):
        proposals = store.load_principles("proposals.json")
        log.info("propose: reusing %d saved principles", len(proposals))
    else:
        proposals = propose(
            propose_pool(train, config),
            llm,
            per_pair=config.proposals_per_pair,
            seed=config.seed,
            style=style,
            samples=config.proposal_samples,
            fallback=config.propose_fallback,
            form_from=train,
        )
        if store is not None:
            store.save_principles("proposals.json", proposals)
            store.mark_done("propose", fp_propose)

    fp_cluster = _fingerprint(fp_propose, embedder.name, config.n_clusters, config.seed)
    if store is not None and store.is_done("cluster", fp_cluster):
        candidates, tested = store.load_clusters()
    else:
        clustering = cluster(proposals, embedder, n_clusters=config.n_clusters, seed=config.seed)
        candidates, tested = list(clustering.candidates), list(clustering.representatives)
        if store is not None:
            store.save_clusters(candidates, tested)
            store.mark_done("cluster", fp_cluster)

    mode = _llm_vote_mode(config, llm)
    if config.cascade and config.adaptive:
        log.warning("cascade: applies to exhaustive voting only; adaptive voting asks the LLM about every item it tests")
    adaptive: list[object] = [config.max_principles, config.confidence, config.min_pairs] if config.adaptive else []
    adaptive += ["one order"] if config.adaptive and config.adaptive_one_order else []
    tier = [config.vote_mode, embedder.name] if config.vote_mode == "embedding" else ["cascade", embedder.name] if config.cascade else []
    fp_vote = _fingerprint(fp_cluster, llm.model, config.vote_batch_size, mode, *adaptive, *tier)
    if store is not None and store.is_done("vote", fp_vote):
        votes = store.load_votes()
    else:
        votes = _vote_stage(train, tested, llm, embedder, config, mode, adaptive=config.adaptive)
        if store is not None:
            store.save_votes(votes)
            store.mark_done("vote", fp_vote)

    constitution, stats, selection = select(
        tested,
        train,
        votes,
        method=config.selection,
        max_principles=config.max_principles,
        min_votes=config.min_votes,
        min_gain=config.min_gain,
        duplicate_agreement=config.duplicate_agreement,
        alpha=config.alpha,
    )
    stability = selection_stability(
        tested,
        train,
        votes,
        selection,
        n_resamples=config.bootstrap,
        seed=config.seed,
        max_principles=config.max_principles,
        min_votes=config.min_votes,
        duplicate_agreement=config.duplicate_agreement,
    )
    if store is not None:
        store.save_constitution(constitution)
    return RunResult(
        constitution=constitution,
        candidates=tuple(candidates),
        tested=tuple(tested),
        stats=tuple(stats),
        votes=tuple(votes),
        train=tuple(train),
        test=(),
        selection=selection,
        stability=stability,
    )


def trust_notes(
    constitution: Constitution, n_train: int, evaluation: Evaluation | None, *, alpha: float = 0.05
) -> list[str]:
    """Plain sentences that say when the result is not reliable (printed first by the CLI and the report)."""
    notes = [significance_note(constitution, n_pairs=n_train, alpha=alpha)]
    if evaluation is not None:
        notes.append(evaluation.gain_note())
    return [n for n in notes if n]


def _evaluate(
    result: RunResult,
    test: Sequence[Comparison],
    llm: LLM,
    config: RunConfig,
    store: RunStore | None,
    flipped: RunResult | None,
    *,
    embedder: Embedder,
) -> Evaluation:
    mode = _llm_vote_mode(config, llm)
    evaluation = evaluate(
        test,
        llm,
        constitution_texts=result.constitution.texts,
        candidate_texts=[p.text for p in result.tested],
        seed=config.seed,
        flipped_constitution_texts=flipped.constitution.texts if flipped else None,
        mode=mode,
        train=list(result.train),
    )
    # Principle-count curve: the order comes from greedy forward selection on the train votes over
    # the same candidates selection used (qualified, duplicates merged), without selection's minimum
    # gain, so the greedy constitution is a prefix of it and the knee is visible. Each prefix is
    # scored on held-out votes, never on the pairs it was chosen on.
    if result.selection is not None:
        merged = {m.merged for m in result.selection.merges}
        candidates = [pid for pid in result.selection.qualified if pid not in merged]
    else:
        candidates = [s.principle_id for s in sorted((s for s in result.stats if s.agreement is not None), key=rank_key)]
    order = forward_select(
        candidates, list(result.votes), list(result.train), max_principles=config.curve_candidates
    ).principle_ids
    if not order:
        return evaluation
    by_id = {p.id: p for p in result.tested}
    # the constitution's own principles are voted too (with --select strength they need not be on the curve),
    # so exports can score every constitution principle held out
    voted = list(dict.fromkeys([*order, *(p.id for p in result.constitution.principles)]))
    test_votes = _vote_stage(test, [by_id[i] for i in voted], llm, embedder, config, mode, adaptive=False)
    if store is not None:
        store.save_votes(test_votes, name="test_votes.csv")
    held_out = [
        float(agreement_scores(predict_from_votes(order[:k], test_votes, test), test).mean())
        for k in range(1, len(order) + 1)
    ]
    return dataclasses.replace(evaluation, curve=SelectionCurve(tuple(order), tuple(held_out)))


def _vote_stage(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    embedder: Embedder,
    config: RunConfig,
    mode: VoteMode,
    *,
    adaptive: bool,
) -> list[Vote]:
    """The one place that picks the voter: embedding only, adaptive, cascade, or exhaustive LLM voting."""
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
    return vote(comparisons, principles, llm, batch_size=config.vote_batch_size, mode=mode)


def _llm_vote_mode(config: RunConfig, llm: LLM) -> VoteMode:
    """The LLM vote mode; with vote_mode="embedding" the judge still needs one, so it is resolved as "auto"."""
    return resolve_vote_mode("auto" if config.vote_mode == "embedding" else config.vote_mode, llm)
