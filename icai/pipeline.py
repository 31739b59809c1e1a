"""The only orchestrator: runs the stages in order and checkpoints each one into the run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import icai.prompts as prompts
from icai._version import __version__
from icai.cluster import cluster
from icai.config import RunConfig
from icai.embed import Embedder
from icai.embed_vote import CascadeStats
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
from icai.propose import propose, propose_unlabelled, resolve_propose_style
from icai.select import Selection, Stability, rank_key, select_as_configured, selection_stability, significance_note
from icai.split import propose_pool, train_test_split
from icai.store import RunStore
from icai.style import style_principles
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote, stats_to_dict
from icai.user_principles import USER_ORIGIN, user_principles
from icai.voter import held_out_judge, llm_vote_mode, resolve_voter, vote_as_configured
from icai.votes import VoteTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    constitution: Constitution
    candidates: tuple[Principle, ...]
    """Every proposed principle, with its cluster."""
    tested: tuple[Principle, ...]
    """The cluster representatives that were voted on."""
    stats: tuple[PrincipleStats, ...]
    votes: Sequence[Vote]
    """The training votes: a `icai.votes.VoteTable` from exhaustive voting (columns, possibly memory-mapped)."""
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


def prompts_hash(stage: str) -> str:
    """A hash of the current values of the prompt constants `stage` sends (icai.prompts.STAGE_PROMPTS)."""
    return _fingerprint({name: getattr(prompts, name) for name in prompts.STAGE_PROMPTS.get(stage, ())})


def stage_fingerprint(stage: str, upstream: str, config: RunConfig, *extra: Any) -> str:
    """What a stage's saved output depends on: the upstream fingerprint (or data hash), the stage's config group,
    the package version, the prompts it sends, and `extra` (the model or embedder that ran, resolved modes)."""
    return _fingerprint(stage, upstream, config.group(stage), __version__, prompts_hash(stage), *extra)


def recorded_config(config: RunConfig, *, llm: LLM, embedder: Embedder) -> RunConfig:
    """The config as it ran: `model` and `embedder` replaced by the names of the model and embedder given to run()."""
    return dataclasses.replace(config, model=llm.model, embedder=embedder.name)


def run(
    comparisons: Sequence[Comparison],
    *,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig = RunConfig(),
    store: RunStore | None = None,
    overwrite: bool = False,
) -> RunResult:
    """propose -> cluster -> vote -> select on the train split, then evaluate on the test split.

    With a store, each stage's output is saved and a rerun with the same data
    and options reuses it; LLM calls are cached in the store's cache, so an
    interrupted stage resumes without repeating completed calls. The store is
    locked for the run; a store holding another dataset's run is refused unless
    `overwrite` (then it is emptied first). `config.model` and `config.embedder`
    are recorded as the names of `llm` and `embedder`, the ones that ran.
    """
    if not comparisons:
        raise ValueError("no comparisons to learn from")
    config = resolve_voter(recorded_config(config, llm=llm, embedder=embedder), llm.capabilities)
    data_hash = dataset_hash(comparisons)  # once: it reads every text (about 15 s for a million pairs)
    locked_here = False
    if store is not None:
        locked_here = store.begin(dataset_hash=data_hash, config=config.to_dict(), version=__version__, overwrite=overwrite)
    try:
        return _run(comparisons, data_hash, llm=llm, embedder=embedder, config=config, store=store)
    finally:
        if store is not None and locked_here:
            store.release()


def _run(
    comparisons: Sequence[Comparison],
    data_hash: str,
    *,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig,
    store: RunStore | None,
) -> RunResult:
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
        store.save_comparisons(train, test)

    train_hash = dataset_hash(train)
    result = _learn(train, train_hash, llm, embedder, config, store)
    flipped: RunResult | None = None
    evaluation: Evaluation | None = None
    if test:
        if config.flip_check:
            flipped_train = [c.with_preferred(c.rejected) for c in train]
            flipped = _learn(
                flipped_train, dataset_hash(flipped_train), llm, embedder, config, store.child("flipped") if store else None
            )
        evaluation = _evaluate(result, test, llm, config, store, flipped, embedder=embedder)

    metadata = {
        "config": config.to_dict(),
        "dataset_hash": data_hash,
        "n_train": len(train),
        "n_test": len(test),
        "n_candidates": len(result.candidates),
        "n_tested": len(result.tested),
        **_vote_counts(result.votes),
        "usage": llm.usage.as_dict(),
        "cost_usd": llm.cost_usd,
        "model": llm.model,
        "embedder": embedder.name,
        "version": __version__,
        "candidate_origins": {o: sum(p.origin == o for p in result.candidates) for o in sorted({p.origin for p in result.candidates})},
        "candidate_hints": {h or "none": sum(p.hint == h for p in result.candidates) for h in sorted({p.hint for p in result.candidates})},
        "train_hash": train_hash,
        "tested_principles": [{"id": p.id, "text": p.text, "origin": p.origin} for p in result.tested],
        "user_principles": user_principle_rows(result),
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
        else:  # a run without a test split has no held-out outputs: a previous run's must not be shown as its own
            store.discard("evaluation.json", "test_votes.csv", "test_votes.columns")
        if flipped is None:
            store.discard("flipped")
    return dataclasses.replace(
        result,
        constitution=constitution,
        test=tuple(test),
        evaluation=evaluation,
        flipped=flipped,
        usage=llm.usage.as_dict(),
    )


def _learn(
    train: Sequence[Comparison], data: str, llm: LLM, embedder: Embedder, config: RunConfig, store: RunStore | None
) -> RunResult:
    """The stages up to selection on `train`, whose `dataset_hash` is `data` (the stages' fingerprints start from it)."""
    if config.principles_only:
        # icai test: the user's principles are the candidates; nothing is proposed or clustered
        fp_cluster = stage_fingerprint("cluster", data, config, "principles only")
        candidates = tested = user_principles(config.principles)
        if store is not None:
            store.save_clusters(candidates, tested)
            store.mark_done("cluster", fp_cluster)
        return _vote_and_select(train, candidates, tested, fp_cluster, llm, embedder, config, store)
    style = resolve_propose_style(config.propose_style, llm.capabilities)
    fp_propose = stage_fingerprint("propose", data, config, llm.model, style)
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

    fp_cluster = stage_fingerprint("cluster", fp_propose, config, embedder.name)
    if store is not None and store.is_done("cluster", fp_cluster):
        candidates, tested = store.load_clusters()
    else:
        clustering = cluster(proposals, embedder, n_clusters=config.n_clusters, seed=config.seed)
        candidates, tested = with_user_principles(
            clustering.candidates, clustering.representatives, user_principles(config.principles)
        )
        if config.style_principles:
            candidates, tested = with_style_principles(candidates, tested)
        if store is not None:
            store.save_clusters(candidates, tested)
            store.mark_done("cluster", fp_cluster)
    return _vote_and_select(train, candidates, tested, fp_cluster, llm, embedder, config, store)


@dataclass(frozen=True)
class LabelPrep:
    """What `icai label` needs before the first label: the pairs, the principles and their label-free votes."""

    pairs: tuple[Comparison, ...]
    candidates: tuple[Principle, ...]
    tested: tuple[Principle, ...]
    votes: tuple[Vote, ...]
    """One per (pair, tested principle); their picks say which side each principle takes, their value means nothing."""


def labelling_config(config: RunConfig) -> RunConfig:
    """The options a labelling session runs under: every pair is a training pair and every vote is made up front."""
    return dataclasses.replace(config, test_size=0.0, adaptive=False, flip_check=False, principles_only=False)


def prepare_labelling(
    pairs: Sequence[Comparison],
    *,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig = RunConfig(),
    store: RunStore | None = None,
    overwrite: bool = False,
) -> LabelPrep:
    """Label-free propose -> cluster -> vote over unlabelled pairs, checkpointed like `run`; no label is read.

    Principles come from `icai.propose.propose_unlabelled` (each difference in both directions) on
    `propose_pool(pairs, config)`, then are clustered, joined by the style principles as in `run`
    (`config.style_principles`; both directions of each feature, voted by counting), and voted on every pair. These are all the model calls
    of a labelling session: labels, given later (`icai.labelling`), only count votes. The pairs'
    `preferred` is ignored (the saved votes' values are relative to it and are never read; their picks are).
    """
    if not pairs:
        raise ValueError("no pairs to label")
    config = recorded_config(labelling_config(config), llm=llm, embedder=embedder)
    placeholder = [c.with_preferred("a") for c in pairs]  # a label in the input must not change any fingerprint
    locked_here = False
    if store is not None:
        locked_here = store.begin(
            dataset_hash=dataset_hash(placeholder), config=config.to_dict(), version=__version__, overwrite=overwrite
        )
    try:
        if store is not None:
            store.save_label_pairs(placeholder)
        data = dataset_hash(placeholder)
        fp_propose = stage_fingerprint("propose", data, config, llm.model, "label-free")
        if store is not None and store.is_done("propose", fp_propose):
            proposals = store.load_principles("proposals.json")
        else:
            proposals = propose_unlabelled(
                propose_pool(placeholder, config), llm, per_pair=config.proposals_per_pair, seed=config.seed
            )
            if store is not None:
                store.save_principles("proposals.json", proposals)
                store.mark_done("propose", fp_propose)
        if not proposals:
            raise ValueError("the annotator proposed no usable principle for any pair; nothing to label against")
        fp_cluster = stage_fingerprint("cluster", fp_propose, config, embedder.name)
        if store is not None and store.is_done("cluster", fp_cluster):
            candidates, tested = store.load_clusters()
        else:
            clustering = cluster(proposals, embedder, n_clusters=config.n_clusters, seed=config.seed)
            candidates, tested = with_user_principles(
                clustering.candidates, clustering.representatives, user_principles(config.principles)
            )
            if config.style_principles:  # label-free like the proposals: both directions of each feature
                candidates, tested = with_style_principles(candidates, tested)
            if store is not None:
                store.save_clusters(candidates, tested)
                store.mark_done("cluster", fp_cluster)
        mode = llm_vote_mode(config, llm)
        uses_embedder = config.vote_mode == "embedding" or config.cascade
        fp_vote = stage_fingerprint("vote", fp_cluster, config, llm.model, mode, embedder.name if uses_embedder else None)
        if store is not None and store.is_done("vote", fp_vote):
            votes = store.load_votes()
        else:
            votes = vote_as_configured(placeholder, tested, llm, embedder, config, mode, adaptive=False)
            if store is not None:
                store.save_votes(votes)
                store.mark_done("vote", fp_vote)
        return LabelPrep(tuple(placeholder), tuple(candidates), tuple(tested), tuple(votes))
    finally:
        if store is not None and locked_here:
            store.release()


def with_user_principles(
    candidates: Sequence[Principle], representatives: Sequence[Principle], user: Sequence[Principle]
) -> tuple[list[Principle], list[Principle]]:
    """Candidates and tested principles with the user's appended: they bypass clustering, so none is clustered away.

    A proposed principle with the same text (the same id) as a user principle gives way to the user's.
    """
    ids = {p.id for p in user}
    return (
        [p for p in candidates if p.id not in ids] + list(user),
        [p for p in representatives if p.id not in ids] + list(user),
    )


def with_style_principles(
    candidates: Sequence[Principle], tested: Sequence[Principle]
) -> tuple[list[Principle], list[Principle]]:
    """Candidates and tested principles with the style principles appended (`icai.style`); none is clustered.

    A principle already in the pool with a style principle's text (a user's, say) keeps its place and origin.
    """
    have = {p.id for p in tested} | {p.id for p in candidates}
    style = [p for p in style_principles() if p.id not in have]
    return [*candidates, *style], [*tested, *style]


def _vote_and_select(
    train: Sequence[Comparison],
    candidates: Sequence[Principle],
    tested: Sequence[Principle],
    fp_cluster: str,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig,
    store: RunStore | None,
) -> RunResult:
    """Stages 3 and 4 (vote, select) over `tested`, checkpointed after the cluster stage's fingerprint."""
    mode = llm_vote_mode(config, llm)
    if config.cascade and config.adaptive:
        log.warning("cascade: applies to exhaustive voting only; adaptive voting asks the LLM about every item it tests")
    uses_embedder = config.vote_mode == "embedding" or (config.cascade and not config.adaptive)
    fp_vote = stage_fingerprint("vote", fp_cluster, config, llm.model, mode, embedder.name if uses_embedder else None)
    if store is not None and store.is_done("vote", fp_vote):
        votes = store.load_votes()
    else:
        votes = vote_as_configured(train, tested, llm, embedder, config, mode, adaptive=config.adaptive, store=store)
        if store is not None:
            store.save_votes(votes)
            store.mark_done("vote", fp_vote)

    constitution, stats, selection = select_as_configured(config, tested, train, votes)
    stability = selection_stability(
        tested,
        train,
        votes,
        selection,
        n_resamples=config.bootstrap,
        seed=config.seed,
    )
    if store is not None:
        store.save_constitution(constitution)
    return RunResult(
        constitution=constitution,
        candidates=tuple(candidates),
        tested=tuple(tested),
        stats=tuple(stats),
        votes=votes,
        train=tuple(train),
        test=(),
        selection=selection,
        stability=stability,
    )


def user_principle_rows(result: RunResult) -> list[dict[str, Any]]:
    """Every user principle of a result with its statistics and place, selected or not (constitution.json)."""
    rank = {p.id: i for i, p in enumerate(result.constitution.principles, start=1)}
    merged_into = {m.merged: m.kept for m in result.selection.merges} if result.selection else {}
    stats = {s.principle_id: s for s in result.stats}
    return [
        {
            "id": p.id,
            "text": p.text,
            "origin": p.origin,
            "in_constitution": p.id in rank,
            "rank": rank.get(p.id),
            "merged_into": merged_into.get(p.id),
            "stats": stats_to_dict(stats[p.id]) if p.id in stats else None,
        }
        for p in result.tested
        if p.origin == USER_ORIGIN
    ]


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
    mode = llm_vote_mode(config, llm)
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
        candidates, result.votes, list(result.train), max_principles=config.curve_candidates
    ).principle_ids
    by_id = {p.id: p for p in result.tested}
    constitution_ids = [p.id for p in result.constitution.principles]
    # the constitution's own principles are voted too (with --select strength they need not be on the curve),
    # so exports can score every constitution principle held out, and a judge can follow those votes
    voted = list(dict.fromkeys([*order, *constitution_ids]))
    test_votes: Sequence[Vote] = []
    if voted:
        test_votes = vote_as_configured(
            test, [by_id[i] for i in voted], llm, embedder, config, mode, adaptive=False, store=store, name="test_votes.csv"
        )
    if voted and store is not None:
        store.save_votes(test_votes, name="test_votes.csv")
    evaluation = evaluate(
        test,
        llm,
        constitution_texts=result.constitution.texts,
        candidate_texts=[p.text for p in result.tested],
        seed=config.seed,
        flipped_constitution_texts=flipped.constitution.texts if flipped else None,
        mode=mode,
        train=list(result.train),
        **held_out_judge(test, result.constitution.principles, config, llm=llm, embedder=embedder, votes=test_votes),
    )
    if not order:
        return evaluation
    held_out = [
        float(agreement_scores(predict_from_votes(order[:k], test_votes, test), test).mean())
        for k in range(1, len(order) + 1)
    ]
    return dataclasses.replace(evaluation, curve=SelectionCurve(tuple(order), tuple(held_out)))


def _vote_counts(votes: Sequence[Vote]) -> dict[str, int]:
    """Votes, invalid votes and unreadable picks, for the constitution's metadata."""
    if isinstance(votes, VoteTable):
        return votes.counts()
    return {
        "n_votes": len(votes),
        "n_invalid_votes": sum(v.value == "invalid" for v in votes),
        "n_invalid_picks": sum(p == "invalid" for v in votes for p in v.picks),
    }
