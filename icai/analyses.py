"""Analyses over finished runs: per-group statistics of one run, and the comparison of two runs.

They reuse the votes a run saved and vote what is missing with the run's own options (`icai.voter`), so
the orchestrator (`icai.pipeline`) keeps the stage order of a run and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from icai.compare import CompareResult, CrossPlan, Side, compare_sides, match_principles, plan_cross_votes
from icai.config import RunConfig
from icai.cost import estimate_vote
from icai.embed import Embedder
from icai.groups import GroupAnalysis, analyse_groups, group_labels
from icai.llm.client import LLM
from icai.pipeline import RunResult
from icai.select import select_as_configured
from icai.store import CompareStore, RunStore
from icai.types import Comparison, Principle, Vote
from icai.user_principles import USER_ORIGIN
from icai.vote import VoteMode, vote
from icai.voter import llm_vote_mode, vote_as_configured

# --- subgroups (issue 18): statistics per group of a metadata column, from the run's votes --------------------


def run_groups(
    result: RunResult,
    *,
    by: str,
    config: RunConfig,
    bins: int | None = None,
    test_votes: Sequence[Vote] = (),
    per_group_constitution: bool = False,
    store: RunStore | None = None,
    extra: Mapping[str, Any] | None = None,
) -> GroupAnalysis:
    """Per-group strength of the constitution's (and the user's) principles and the tests of their differences (`icai.groups`).

    Uses the votes the run already made, no model calls: the training votes and, for the constitution's
    principles, the held-out ones (`test_votes`, the run's test_votes.csv). With `per_group_constitution`, a
    constitution is selected for each group from the shared training votes (`icai.select.select` on the
    group's pairs) and its principles are analysed too. Saved as groups.json when a store is given.
    """
    comparisons = [*result.train, *result.test]
    grouping = group_labels(comparisons, by, bins=bins)
    principles = list(result.constitution.principles)
    # the user's own principles are split too, selected or not (icai test, icai run --principles)
    principles += [p for p in result.tested if p.origin == USER_ORIGIN and p.id not in {q.id for q in principles}]
    info: dict[str, Any] = dict(extra or {})
    if per_group_constitution:
        per_group: dict[str, list[dict[str, Any]]] = {}
        for name in grouping.groups:
            members = [c for c in result.train if grouping.labels.get(c.id) == name]
            if not members:
                per_group[name] = []
                continue
            group_constitution, _, _ = select_as_configured(config, result.tested, members, result.votes)
            per_group[name] = [
                {"id": p.id, "text": p.text, "strength": s.strength if (s := group_constitution.stats_for(p.id)) else None}
                for p in group_constitution.principles
            ]
            principles += [p for p in group_constitution.principles if p.id not in {q.id for q in principles}]
        info["per_group_constitutions"] = per_group
    in_constitution = [p.id for p in result.constitution.principles]
    analysis = analyse_groups(
        principles,
        comparisons,
        [*result.votes, *(v for v in test_votes if v.principle_id in set(in_constitution))],
        grouping,
        alpha=config.alpha,
        seed=config.seed,
        constitution_ids=in_constitution,
    )
    info.setdefault("pairs", f"{len(result.train)} training and {len(result.test)} held-out pairs")
    analysis = dataclasses.replace(analysis, extra=info)
    if store is not None:
        store.save_groups(analysis.to_dict())
    return analysis


def evaluate_groups(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    by: str,
    bins: int | None = None,
    mode: VoteMode = "generate",
    batch_size: int = 40,
    alpha: float = 0.05,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> GroupAnalysis:
    """Vote each given principle on every pair, then its per-group statistics and difference tests (`icai.groups`)."""
    grouping = group_labels(comparisons, by, bins=bins)  # before any call: a wrong column costs nothing
    votes = vote(comparisons, principles, llm, batch_size=batch_size, mode=mode)
    analysis = analyse_groups(principles, comparisons, votes, grouping, alpha=alpha, seed=seed)
    return dataclasses.replace(analysis, extra=dict(extra or {}, pairs=f"{len(comparisons)} pairs"))


# --- compare two runs (issue 18): cross-test each constitution on the other side's pairs -------------------------


def side_config(side: Side) -> RunConfig:
    """The RunConfig a side's run recorded (fields this version does not know are ignored)."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in side.config.items() if k in known})


def cross_vote_calls(plan: CrossPlan, llm: LLM, config: RunConfig) -> int:
    """Model calls the cross test of `plan` makes at most (fewer when the LLM cache holds some of them)."""
    mode = llm_vote_mode(config, llm)
    return sum(
        estimate_vote("compare", list(pairs), len(principles), config, mode, llm.capabilities).calls
        for principles, pairs in (plan.a_on_b, plan.b_on_a)
    )


def compare_runs(
    a: Side,
    b: Side,
    *,
    llm: LLM,
    embedder: Embedder,
    store: CompareStore,
    confirm: Callable[[CrossPlan, int], bool],
    min_similarity: float = 0.8,
    seed: int = 0,
) -> CompareResult | None:
    """Test each side's constitution on the other side's pairs, match the principles, and compare their strengths.

    Votes that exist (the runs' own, or a previous compare's in `store`) are reused; `confirm(plan, calls)` is
    asked before any model call and None is returned when it says no. Voting follows side A's recorded options
    (vote mode, batch size). Writes cross_a.csv, cross_b.csv and compare.json into `store`.
    """
    config = side_config(a)
    known_a = list(store.load_votes("cross_a.csv")) if store.has("cross_a.csv") else []
    known_b = list(store.load_votes("cross_b.csv")) if store.has("cross_b.csv") else []
    plan = plan_cross_votes(a, b, known_a=known_a, known_b=known_b)
    if not confirm(plan, cross_vote_calls(plan, llm, config)):
        return None
    mode = llm_vote_mode(config, llm)
    for (principles, pairs), known, name in ((plan.a_on_b, known_b, "cross_b.csv"), (plan.b_on_a, known_a, "cross_a.csv")):
        if principles:
            new = vote_as_configured(pairs, principles, llm, embedder, config, mode, adaptive=False)
            known += new
            store.save_votes(known, name=name)
    on_a, on_b = [*a.votes, *known_a], [*b.votes, *known_b]
    matches = match_principles(
        a.principles, b.principles, embedder, voted=[(a.comparisons, on_a), (b.comparisons, on_b)],
        min_similarity=min_similarity,
    )
    result = compare_sides(a, b, matches, cross_a=known_a, cross_b=known_b, alpha=config.alpha, seed=seed)
    result = dataclasses.replace(
        result,
        extra={
            "runs": {a.name: a.path, b.name: b.path},
            "model": llm.model,
            "embedder": embedder.name,
            "min_similarity": min_similarity,
            "cross_votes": {"new": plan.n_needed, "reused": plan.n_reused},
            "usage": llm.usage.as_dict(),
        },
    )
    store.save_compare(result.to_dict())
    return result
