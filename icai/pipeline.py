"""The only orchestrator: runs the stages in order and checkpoints each one into the run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

import icai.prompts as prompts
from icai._version import __version__
from icai.adaptive import vote_adaptive
from icai.cluster import cluster
from icai.compare import CompareResult, CrossPlan, Side
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
from icai.groups import GroupAnalysis
from icai.llm import DEFAULT_MODEL
from icai.llm.base import ConfigError
from icai.llm.client import LLM
from icai.prompts import MAX_RESPONSE_CHARS
from icai.propose import propose, resolve_propose_style
from icai.select import Selection, Stability, rank_key, select, selection_stability, significance_note
from icai.split import propose_pool, train_test_split
from icai.store import CompareStore, RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote, stats_to_dict
from icai.user_principles import USER_ORIGIN, user_principles
from icai.vote import VoteMode, resolve_vote_mode, vote

log = logging.getLogger(__name__)


STAGES = ("models", "propose", "cluster", "vote", "select", "evaluate")
"""RunConfig's option groups, in stage order; `icai run --help` shows one argument group per stage."""

_ALL = ("propose", "cluster", "vote", "select", "evaluate")
"""The stages a field can affect (its fingerprint group)."""


class OptionError(ConfigError):
    """A RunConfig option with a value that cannot work; `option` is the field name, `reason` the rest of the sentence."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option} {reason}")
        self.option = option
        self.reason = reason


def _option(
    default: Any,
    *,
    group: str,
    help: str,
    flag: str | None = "",
    dest: str | None = None,
    check: tuple[Any, ...] = (),
    affects: Mapping[str, Callable[[RunConfig], bool] | None] | None = None,
    negatable: bool = False,
) -> Any:
    """A RunConfig field with its metadata: the one place that states its default, group, CLI flag, help and check.

    flag: "" derives --field-name, None keeps the option out of the CLI; dest: the argparse attribute when it is
    not the field name (the CLI's names of old: args.batch_size, args.one_order). check: ("positive",), ("non_negative",)
    or ("range", low, high, include_low, include_high). affects: stage -> condition on the config under which
    the field changes that stage's output (default: its own group, always); stage fingerprints hash these.
    """
    return field(
        default=default,
        metadata={
            "group": group,
            "help": help,
            "flag": flag,
            "dest": dest,
            "check": check,
            "affects": {group: None} if affects is None else dict(affects),
            "negatable": negatable,
        },
    )


def _adaptive(c: RunConfig) -> bool:
    return c.adaptive


def _small_style(c: RunConfig) -> bool:
    return c.propose_style != "standard"


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run, the only home of its default. Checked when made; stored with the result.

    Each field's metadata (see `_option`) names its stage group, CLI flag and help (icai.cli builds `icai run`'s
    options from them) and the stages it affects: a changed option re-runs exactly those stages. `model` and
    `embedder` name what the CLI and the cost estimate build; `run()` records the models that actually ran.
    """

    model: str = _option(
        DEFAULT_MODEL, group="models", help="provider/model", affects={}
    )
    embedder: str = _option("minilm", group="models", help="minilm | st/<folder> | openai/<model> (/v1/embeddings at $OPENAI_BASE_URL or the OpenAI API) | hash", affects={})
    seed: int = _option(
        0,
        group="models",
        help="every random choice (split, sampling, k-means, adaptive order, bootstrap) follows it",
        affects={"propose": None, "cluster": None, "vote": _adaptive, "select": None, "evaluate": None},
    )
    # propose ----------------------------------------------------------------------------------
    proposals_per_pair: int = _option(3, group="propose", help="principles asked for per pair", check=("positive",))
    propose_sample: int | None = _option(
        None, group="propose", help="propose principles from this many pairs (seeded sample; default: all)",
        check=("positive",),
    )
    """Propose principles from this many training pairs (seeded sample); None: from all."""
    propose_style: Literal["auto", "standard", "small"] = _option(
        "auto",
        group="propose",
        help="small: contrastive word hints and one rule per call, for tiny local models; auto picks it for providers "
        "that declare small-model prompts (local/ models)",
    )
    """auto: "small" (contrastive hints, one sampled rule per call; icai.propose) for providers whose capabilities
    declare `small_model` (local models), else "standard"."""
    proposal_samples: int = _option(
        3, group="propose", help="small style: calls per pair", flag=None, check=("positive",),
        affects={"propose": _small_style},
    )
    propose_fallback: bool = _option(
        False,
        group="propose",
        help="small style: a pair with no usable model rule gets one written by code from its top keyword "
        "(origin hint-fallback; off by default)",
        affects={"propose": _small_style},
    )
    """Small proposal style: a pair with no usable rule gets a code-written one, tagged origin="hint-fallback"
    (off by default: such rules are not a model's reading of the pair; `icai run --propose-fallback`)."""
    # cluster ----------------------------------------------------------------------------------
    n_clusters: int = _option(40, group="cluster", help="candidate principles kept after clustering", check=("positive",))
    principles: tuple[str, ...] = _option(
        (),
        group="cluster",
        help="your own principles (icai run --principles FILE): origin user, never clustered away, voted like the others",
        flag=None,
    )
    """The user's principles (`icai.user_principles`): added to the cluster representatives, so never clustered
    away; voted and selected like the others; their statistics are kept in constitution.json `user_principles`."""
    principles_only: bool = _option(
        False, group="cluster", help="vote only `principles`: no proposing, no clustering (icai test)", flag=None
    )
    """Test the user's principles only (`icai test`): propose and cluster are skipped; vote, select and evaluate run."""
    # vote -------------------------------------------------------------------------------------
    vote_mode: Literal["auto", "generate", "logprob", "embedding"] = _option(
        "auto",
        group="vote",
        help="logprob: read P(A)/P(B) (local models, OpenAI-compatible servers); generate: JSON answers; "
        "embedding: no LLM, cosine similarity (run only); auto: logprob for local models and for servers "
        "at a --base-url that return log-probs (asked once), generate otherwise",
    )
    """auto: log-prob A/B scoring for local models and for OpenAI-compatible servers at a base_url that return
    log-probs (asked once), generated JSON for API models (icai.vote.resolve_vote_mode);
    embedding: no LLM votes, cosine similarity of principle and responses (icai.embed_vote)."""
    vote_batch_size: int = _option(
        40,
        group="vote",
        help="principles per voting call (log-prob votes: on the local model only)",
        flag="--batch-size",
        dest="batch_size",
        check=("positive",),
    )
    """Principles per voting call; 40 as in the reference implementation (bench/calls.py, docs/benchmarks.md).
    Log-prob votes batch only on providers that take branched requests (the local model)."""
    cascade: bool = _option(
        False, group="vote", help="skip LLM votes on (pair, principle) items the embedder finds clearly irrelevant"
    )
    """Exhaustive LLM voting skips (pair, principle) items the embedder finds clearly irrelevant (icai.embed_vote)."""
    adaptive: bool = _option(
        False,
        group="vote",
        help="test each principle only until its place in or out of the top --max-principles is clear",
        negatable=True,
    )
    """Vote each principle only until its place in or out of the top max_principles is clear (icai.adaptive)."""
    confidence: float = _option(
        0.95, group="vote", help="adaptive: confidence of its intervals", check=("range", 0, 1, False, False),
        affects={"vote": _adaptive},
    )
    """Adaptive voting: probability that all its confidence intervals hold."""
    min_pairs: int = _option(
        32, group="vote", help="adaptive: pairs every principle is tested on", check=("positive",),
        affects={"vote": _adaptive},
    )
    """Adaptive voting: pairs every principle is tested on before any is stopped."""
    adaptive_one_order: bool = _option(
        False,
        group="vote",
        help="adaptive: ask each pair once, in a random order (half the voting calls; log-prob votes are calibrated "
        "for position bias)",
        flag="--one-order",
        dest="one_order",
        affects={"vote": _adaptive},
    )
    """Adaptive voting: ask each pair once, in a seeded random order, instead of in both orders (half the calls);
    log-prob margins are then calibrated by each round's mean (icai.vote.calibrated_margins)."""
    # select -----------------------------------------------------------------------------------
    max_principles: int = _option(
        5, group="select", help="constitution size", check=("positive",),
        affects={"select": None, "vote": _adaptive, "evaluate": None},
    )
    selection: Literal["greedy", "strength"] = _option(
        "greedy",
        group="select",
        help="greedy: add principles while they raise training agreement, merging duplicates; "
        "strength: the strongest --max-principles",
        flag="--select",
    )
    """greedy: add principles while they raise training agreement (icai.select); strength: the top max_principles."""
    min_votes: int = _option(2, group="select", help="decisive votes a principle needs to be ranked", flag=None, check=("positive",))
    min_gain: float = _option(
        0.01, group="select", help="greedy: least rise in training agreement for a principle to enter",
        check=("non_negative",),
    )
    """Greedy selection: least rise in training agreement (and at least one pair's worth) for a principle to enter."""
    duplicate_agreement: float = _option(
        0.9, group="select", help="vote agreement above which two principles are duplicates", flag=None,
        check=("range", 0, 1, False, True),
    )
    """Two principles whose decisive votes agree on this share of the pairs both decided are duplicates."""
    alpha: float = _option(
        0.05, group="select", help="q-value below which a principle is significant", check=("range", 0, 1, False, False)
    )
    """A principle is "significant" when its Benjamini-Hochberg q-value is below alpha, else "exploratory"."""
    bootstrap: int = _option(
        200, group="select", help="resamples for selection stability, from cached votes (0: off)", check=("non_negative",)
    )
    """Bootstrap resamples of the training pairs for selection stability (cached votes; no model calls); 0: off."""
    # evaluate ---------------------------------------------------------------------------------
    test_size: float = _option(
        0.0, group="evaluate", help="held-out share for evaluation, e.g. 0.3", check=("range", 0, 1, True, False),
        affects=dict.fromkeys(_ALL),
    )
    flip_check: bool = _option(False, group="evaluate", help="also learn from flipped labels (sanity check)")
    curve_candidates: int = _option(
        10, group="evaluate", help="principles on the held-out principle-count curve", flag=None, check=("positive",)
    )

    def __post_init__(self) -> None:
        hints = get_type_hints(RunConfig)
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        if isinstance(self.principles, str) or not all(isinstance(t, str) and t.strip() for t in self.principles):
            raise OptionError("principles", "must be a list of non-empty texts")
        object.__setattr__(self, "principles", tuple(self.principles))  # a JSON list (config.json) becomes a tuple
        if self.principles_only and not self.principles:
            raise OptionError("principles_only", "needs principles to test; none were given")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["principles"] = list(self.principles)  # as config.json holds it, so a resumed run compares equal
        return data

    def group(self, stage: str) -> dict[str, Any]:
        """The options that change `stage`'s output under this config (what its fingerprint hashes)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            affects = f.metadata["affects"]
            if stage in affects and (affects[stage] is None or affects[stage](self)):
                out[f.name] = getattr(self, f.name)
        return out


def _check_field(f: dataclasses.Field[Any], hint: Any, value: Any) -> None:
    """Raise OptionError when `value` does not fit the field's type, choices or check."""
    optional = type(None) in get_args(hint)
    if value is None:
        if optional:
            return
        raise OptionError(f.name, "must be set, not None")
    base = next((a for a in get_args(hint) if a is not type(None)), hint) if optional else hint
    if get_origin(base) is Literal:
        choices = get_args(base)
        if value not in choices:
            raise OptionError(f.name, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
        return
    if base is bool:
        if not isinstance(value, bool):
            raise OptionError(f.name, f"must be true or false, not {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise OptionError(f.name, f"must be an integer, not {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise OptionError(f.name, f"must be a number, not {value!r}")
    elif base is str and not (isinstance(value, str) and value):
        raise OptionError(f.name, f"must be a non-empty string, not {value!r}")
    check = f.metadata["check"]
    if not check:
        return
    if check[0] == "positive" and value <= 0:
        raise OptionError(f.name, f"must be positive, not {value}")
    if check[0] == "non_negative" and value < 0:
        raise OptionError(f.name, f"must not be negative, not {value}")
    if check[0] == "range":
        low, high, with_low, with_high = check[1:]
        if not ((low <= value if with_low else low < value) and (value <= high if with_high else value < high)):
            interval = f"{'[' if with_low else '('}{low}, {high}{']' if with_high else ')'}"
            raise OptionError(f.name, f"must lie in {interval}, not {value}")


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
    config = recorded_config(config, llm=llm, embedder=embedder)
    locked_here = False
    if store is not None:
        locked_here = store.begin(
            dataset_hash=dataset_hash(comparisons), config=config.to_dict(), version=__version__, overwrite=overwrite
        )
    try:
        return _run(comparisons, llm=llm, embedder=embedder, config=config, store=store)
    finally:
        if store is not None and locked_here:
            store.release()


def _run(
    comparisons: Sequence[Comparison], *, llm: LLM, embedder: Embedder, config: RunConfig, store: RunStore | None
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
        "train_hash": dataset_hash(train),
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
            store.discard("evaluation.json", "test_votes.csv")
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
    train: Sequence[Comparison], llm: LLM, embedder: Embedder, config: RunConfig, store: RunStore | None
) -> RunResult:
    data = dataset_hash(train)
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
        if store is not None:
            store.save_clusters(candidates, tested)
            store.mark_done("cluster", fp_cluster)
    return _vote_and_select(train, candidates, tested, fp_cluster, llm, embedder, config, store)


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


def _select(
    config: RunConfig, tested: Sequence[Principle], pairs: Sequence[Comparison], votes: Sequence[Vote]
) -> tuple[Constitution, list[PrincipleStats], Selection]:
    """`icai.select.select` with the run's selection options."""
    return select(
        tested,
        pairs,
        votes,
        method=config.selection,
        max_principles=config.max_principles,
        min_votes=config.min_votes,
        min_gain=config.min_gain,
        duplicate_agreement=config.duplicate_agreement,
        alpha=config.alpha,
    )


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
    mode = _llm_vote_mode(config, llm)
    if config.cascade and config.adaptive:
        log.warning("cascade: applies to exhaustive voting only; adaptive voting asks the LLM about every item it tests")
    uses_embedder = config.vote_mode == "embedding" or (config.cascade and not config.adaptive)
    fp_vote = stage_fingerprint("vote", fp_cluster, config, llm.model, mode, embedder.name if uses_embedder else None)
    if store is not None and store.is_done("vote", fp_vote):
        votes = store.load_votes()
    else:
        votes = _vote_stage(train, tested, llm, embedder, config, mode, adaptive=config.adaptive)
        if store is not None:
            store.save_votes(votes)
            store.mark_done("vote", fp_vote)

    constitution, stats, selection = _select(config, tested, train, votes)
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
        votes=tuple(votes),
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
    from icai.groups import analyse_groups, group_labels

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
            group_constitution, _, _ = _select(config, result.tested, members, result.votes)
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
    from icai.groups import analyse_groups, group_labels

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
    from icai.cost import _vote

    mode = _llm_vote_mode(config, llm)
    return sum(
        _vote("compare", list(pairs), len(principles), config, mode, llm.capabilities).calls
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
    from icai.compare import compare_sides, match_principles, plan_cross_votes

    config = side_config(a)
    known_a = store.load_votes("cross_a.csv") if store.has("cross_a.csv") else []
    known_b = store.load_votes("cross_b.csv") if store.has("cross_b.csv") else []
    plan = plan_cross_votes(a, b, known_a=known_a, known_b=known_b)
    if not confirm(plan, cross_vote_calls(plan, llm, config)):
        return None
    mode = _llm_vote_mode(config, llm)
    for (principles, pairs), known, name in ((plan.a_on_b, known_b, "cross_b.csv"), (plan.b_on_a, known_a, "cross_a.csv")):
        if principles:
            new = _vote_stage(pairs, principles, llm, embedder, config, mode, adaptive=False)
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
