"""How well a constitution lets an annotator reconstruct the human labels, against baselines.

An LLM judge sees each pair in both orders; the two verdicts are translated to
the pair's own sides and combined, so a judge that always says "A" scores 0.5.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from icai.debias import SWAP, debiased_margin, debiased_pick, margin_pick
from icai.llm.client import LLM
from icai.parse import parse_verdict
from icai.prompts import judge_request
from icai.select import VoteMatrix, greedy
from icai.stats import direction, paired_bootstrap_diff, score_ci, wilson_interval
from icai.surface import SurfaceBaseline, cross_val_picks, fit_surface
from icai.surface import agreement as surface_agreement
from icai.types import Comparison, Pick, Principle, Vote
from icai.vote import VoteMode, vote

log = logging.getLogger(__name__)

BASELINE = "default"
"""The score every other score is compared with: the judge without principles."""

LLM_CONSTITUTION = "constitution_llm"
"""The LLM judge with the constitution, when the "constitution" score comes from a judge that follows the votes."""

SURFACE = "surface"
"""The surface-feature baseline's score (`icai.surface`: no model calls)."""


@dataclass(frozen=True)
class Judgement:
    """An annotator's debiased verdict on one comparison."""

    comparison_id: str
    predicted: Pick
    """The side with more picks; "neither" on a tie, "invalid" when no pick was valid."""
    picks: tuple[Pick, ...]
    """Raw picks in the comparison's own a/b terms (for LLM judges: original order, then swapped)."""
    margin: float | None = None
    """Log-prob judges: the debiased log-odds of A over B in nats (positive favours a); None otherwise."""



def judge(
    comparisons: Sequence[Comparison],
    llm: LLM,
    *,
    principles: Sequence[str] = (),
    desc: str | None = None,
    mode: VoteMode = "generate",
) -> list[Judgement]:
    """Ask `llm` which response is better, in both orders, following `principles` when given.

    All 2 x len(comparisons) requests go out in one `llm.map` call. Unreadable
    answers become "invalid" picks; LLM failures propagate. With `mode="logprob"`
    the verdict is the sign of the debiased A/B log-odds (`icai.debias.debiased_margin`).
    """
    logprob = mode == "logprob"
    requests = []
    for c in comparisons:
        requests.append(judge_request(c.prompt, c.text_a, c.text_b, principles, logprob=logprob))
        requests.append(judge_request(c.prompt, c.text_b, c.text_a, principles, logprob=logprob))
    completions = llm.map(requests, desc=desc, keys=[c.id for c in comparisons for _ in range(2)])
    out = []
    for i, c in enumerate(comparisons):
        if logprob:
            margin = debiased_margin(completions[2 * i].choice_logprobs, completions[2 * i + 1].choice_logprobs)
            pick = margin_pick(margin, threshold=0.0)
            out.append(Judgement(c.id, pick, (pick,), margin))
            continue
        first = parse_verdict(completions[2 * i].text)
        second = SWAP[parse_verdict(completions[2 * i + 1].text)]
        picks = (first, second)
        out.append(Judgement(c.id, debiased_pick(picks), picks))
    return out


def agreement_scores(judgements: Sequence[Judgement], comparisons: Sequence[Comparison]) -> np.ndarray:
    """Per comparison (in `comparisons` order): 1 if predicted == preferred, 0 if the other side.

    "neither" and "invalid" score 0.5, what a coin flip would score on average,
    so an annotator cannot gain or lose by abstaining or failing to answer.
    """
    by_id = {j.comparison_id: j for j in judgements}
    missing = [c.id for c in comparisons if c.id not in by_id]
    if missing:
        raise ValueError(f"no judgement for {len(missing)} comparisons, e.g. {missing[0]!r}")
    out = np.empty(len(comparisons))
    for i, c in enumerate(comparisons):
        predicted = by_id[c.id].predicted
        out[i] = 1.0 if predicted == c.preferred else 0.0 if predicted == c.rejected else 0.5
    return out


def _direction_matrix(
    principle_ids: Sequence[str], votes: Sequence[Vote], comparisons: Sequence[Comparison]
) -> tuple[np.ndarray, np.ndarray]:
    """directions[i, j] of principle j on comparison i (0 when not voted), and a mask of present votes."""
    row = {c.id: i for i, c in enumerate(comparisons)}
    col = {pid: j for j, pid in enumerate(principle_ids)}
    directions = np.zeros((len(comparisons), len(principle_ids)), dtype=int)
    present = np.zeros_like(directions, dtype=bool)
    for v in votes:
        i, j = row.get(v.comparison_id), col.get(v.principle_id)
        if i is not None and j is not None:
            directions[i, j] = direction(v)
            present[i, j] = any(p != "invalid" for p in v.picks)
    return directions, present


def predict_from_votes(
    principle_ids: Sequence[str], votes: Sequence[Vote], comparisons: Sequence[Comparison]
) -> list[Judgement]:
    """Annotate from existing votes (no LLM calls): the sign of the summed directions, principles weighted equally.

    `picks` holds one pick per principle, in `principle_ids` order ("invalid" where
    the principle has no valid vote on the comparison).
    """
    directions, present = _direction_matrix(principle_ids, votes, comparisons)
    out = []
    for i, c in enumerate(comparisons):
        picks: tuple[Pick, ...] = tuple(
            "invalid" if not ok else "a" if d > 0 else "b" if d < 0 else "neither"
            for d, ok in zip(directions[i], present[i], strict=True)
        )
        total = int(directions[i].sum())
        predicted: Pick = "a" if total > 0 else "b" if total < 0 else "neither"
        out.append(Judgement(c.id, predicted, picks))
    return out


@dataclass(frozen=True)
class SelectionCurve:
    """Principles in the order forward selection added them; agreement[k-1] uses the first k."""

    principle_ids: tuple[str, ...]
    agreement: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"principle_ids": list(self.principle_ids), "agreement": list(self.agreement)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionCurve:
        return cls(tuple(data["principle_ids"]), tuple(float(a) for a in data["agreement"]))


def forward_select(
    candidate_ids: Sequence[str],
    votes: Sequence[Vote],
    comparisons: Sequence[Comparison],
    *,
    max_principles: int = 10,
) -> SelectionCurve:
    """Greedy forward selection of principles for `predict_from_votes` on a validation set.

    Each step adds the candidate that raises mean agreement most (ties go to the
    earlier candidate); selection stops when none raises it or at `max_principles`.
    Computes exactly what `predict_from_votes` + `agreement_scores` would, on a matrix.
    """
    matrix = VoteMatrix(candidate_ids, comparisons, votes)
    chosen, steps = greedy(
        matrix, np.ones(matrix.n_pairs), range(len(matrix.principle_ids)), max_principles=max_principles, min_gain=1e-9
    )
    return SelectionCurve(tuple(s.principle_id for s in steps), tuple(s.agreement for s in steps))


@dataclass(frozen=True)
class Score:
    """Mean agreement of one annotator with the labels, with a bootstrap interval."""

    name: str
    agreement: float
    ci: tuple[float, float]
    n: int
    n_invalid: int
    ci_method: str = "bootstrap"
    """"wilson" (below `icai.stats.SMALL_N` pairs, or when every pair scored the same) or "bootstrap"."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agreement": self.agreement,
            "ci": list(self.ci),
            "n": self.n,
            "n_invalid": self.n_invalid,
            "ci_method": self.ci_method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        lo, hi = data["ci"]
        return cls(
            data["name"],
            float(data["agreement"]),
            (float(lo), float(hi)),
            int(data["n"]),
            int(data["n_invalid"]),
            str(data.get("ci_method", "bootstrap")),
        )


def score(name: str, judgements: Sequence[Judgement], comparisons: Sequence[Comparison], *, seed: int = 0) -> Score:
    """Agreement of `judgements` with the labels of `comparisons`, with a 95% CI (`icai.stats.score_ci`)."""
    values = agreement_scores(judgements, comparisons)
    ids = {c.id for c in comparisons}
    n_invalid = sum(1 for j in judgements if j.comparison_id in ids and j.predicted == "invalid")
    mean = float(values.mean()) if values.size else math.nan
    ci, method = score_ci(values, seed=seed)
    return Score(name, mean, ci, len(comparisons), n_invalid, method)


@dataclass(frozen=True)
class Evaluation:
    """Scores of several annotators on one test set, and each one's paired difference from "default"."""

    scores: tuple[Score, ...]
    differences: Mapping[str, tuple[float, tuple[float, float]]] = field(default_factory=dict)
    curve: SelectionCurve | None = None
    surface: SurfaceBaseline | None = None
    """How the "surface" score was fitted, its weights, and constitution - surface (None when not computed)."""
    explanations: Mapping[str, str] = field(default_factory=dict)
    """Score name -> one sentence saying what that annotator is (printed under the scores)."""
    predictions: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)
    """Annotator name -> comparison id -> its pick (a, b, neither); not part of `to_dict` (icai evaluate --out
    writes it as pairs.csv)."""

    def score_for(self, name: str) -> Score | None:
        return next((s for s in self.scores if s.name == name), None)

    def gain_note(self) -> str | None:
        """One plain sentence when the constitution's held-out gain over the default annotator is not shown."""
        if "constitution" not in self.differences:
            return None
        mean, (lo, hi) = self.differences["constitution"]
        own = self.score_for("constitution")
        n = f" on these {own.n} held-out pairs" if own is not None else ""
        gain = f"{mean:+.2f} (95% CI {lo:+.2f} to {hi:+.2f})"
        if hi < 0:
            return f"The constitution makes the annotator worse{n}: its gain over no constitution is {gain}."
        if lo <= 0:
            return (
                f"The held-out gain over the annotator without a constitution is {gain}{n}: "
                "the interval includes 0, so it is not shown to help."
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": [s.to_dict() for s in self.scores],
            "differences": {k: {"mean": m, "ci": [lo, hi]} for k, (m, (lo, hi)) in self.differences.items()},
            "curve": self.curve.to_dict() if self.curve is not None else None,
            "surface": self.surface.to_dict() if self.surface is not None else None,
            "explanations": dict(self.explanations),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        differences = {
            k: (float(v["mean"]), (float(v["ci"][0]), float(v["ci"][1])))
            for k, v in data.get("differences", {}).items()
        }
        curve = data.get("curve")
        surface = data.get("surface")
        return cls(
            tuple(Score.from_dict(s) for s in data["scores"]),
            differences,
            SelectionCurve.from_dict(curve) if curve is not None else None,
            SurfaceBaseline.from_dict(surface) if surface is not None else None,
            dict(data.get("explanations") or {}),
        )


def evaluate(
    test: Sequence[Comparison],
    llm: LLM,
    *,
    constitution_texts: Sequence[str],
    candidate_texts: Sequence[str],
    seed: int = 0,
    flipped_constitution_texts: Sequence[str] | None = None,
    mode: VoteMode = "generate",
    train: Sequence[Comparison] | None = None,
    random_omitted: str | None = None,
    voter_judgements: Sequence[Judgement] | None = None,
    voter_judge: str | None = None,
) -> Evaluation:
    """Judge `test` with the constitution and with baselines, and score each against the labels.

    Scores: "constitution"; "default" (no principles); "random" (as many principles
    drawn, seeded, from all `candidate_texts`; left out when there are none to draw);
    and, with `flipped_constitution_texts`, "flipped" (that constitution, scored
    against flipped labels) and "constitution_vs_flipped_labels" (the constitution's
    own judgements against flipped labels). Each difference is the paired mean of
    (score - default) per item, with default scored against the same labels as the
    score it is compared with.

    "surface" is the surface-feature baseline (`icai.surface`, no model calls):
    fitted on `train` and scored on `test`; without `train` (or with an empty one),
    cross-validated on `test` itself (left out for fewer than two test pairs).
    `Evaluation.surface` holds its weights and the paired difference constitution - surface.
    `Evaluation.explanations` says in one sentence what each score is; `random_omitted` is the reason given
    when there are no candidates to draw the random baseline from.

    `voter_judgements`: when the principles were voted by something other than this LLM (embeddings, exact
    style features), a judge that follows those votes on `test` (`predict_from_votes`); it becomes the
    "constitution" score, described by `voter_judge`, and the LLM judge with the constitution is kept beside
    it as "constitution_llm".
    """
    if not test:
        raise ValueError("evaluate needs at least one test comparison")
    flipped_test = [c.with_preferred(c.rejected) for c in test]
    judged: dict[str, tuple[list[Judgement], list[Comparison]]] = {}
    k = len(constitution_texts)
    llm_constitution = judge(test, llm, principles=constitution_texts, desc="judge: constitution", mode=mode)
    constitution = llm_constitution if voter_judgements is None else list(voter_judgements)
    judged["constitution"] = (constitution, list(test))
    explanations = {"constitution": f"the judge told to follow the constitution's {_count(k, 'principle')}"}
    if voter_judgements is not None:
        judged[LLM_CONSTITUTION] = (llm_constitution, list(test))
        explanations["constitution"] = voter_judge or "the constitution's own votes on the held-out pairs"
        explanations[LLM_CONSTITUTION] = (
            f"the LLM judge told to follow the constitution's {_count(k, 'principle')} (it cannot see the "
            "similarities or feature counts the votes came from)"
        )
    default = judge(test, llm, desc="judge: default", mode=mode)
    judged[BASELINE] = (default, list(test))
    pool = list(dict.fromkeys(candidate_texts))
    explanations[BASELINE] = "the LLM judge with no principles: each gain below is measured against it"
    if k and pool:
        drawn = random.Random(seed).sample(pool, min(k, len(pool)))
        log.info("random constitution: %s", drawn)
        judged["random"] = (judge(test, llm, principles=drawn, desc="judge: random", mode=mode), list(test))
        explanations["random"] = (
            f"the LLM judge following {_count(len(drawn), 'principle')} drawn at random (seed {seed}) from the "
            f"run's {_count(len(pool), 'candidate principle')}: what choosing them by their votes adds"
        )
    elif k:
        explanations["random"] = "omitted: " + (random_omitted or "no candidate principles to draw from")
    surface = _surface(test, train, seed=seed)
    if surface is not None:
        judged[SURFACE] = (surface[0], list(test))
    if surface is not None:
        explanations[SURFACE] = (
            "no model: a logistic regression on length and style differences of the two responses"
        )
    if flipped_constitution_texts is not None:
        flipped = judge(test, llm, principles=flipped_constitution_texts, desc="judge: flipped", mode=mode)
        judged["flipped"] = (flipped, flipped_test)
        judged["constitution_vs_flipped_labels"] = (llm_constitution, flipped_test)
        explanations["flipped"] = (
            "a constitution learnt from the same training pairs with every label flipped, scored against the "
            "flipped labels: a sound method recovers the opposite rules, so this should score about as high"
        )
        explanations["constitution_vs_flipped_labels"] = (
            "the LLM judge's verdicts with the constitution scored against the flipped labels: 1 - its agreement, a check that "
            "the labels, not the judge, drive the score"
        )

    scores = tuple(score(name, js, comps, seed=seed) for name, (js, comps) in judged.items())
    differences: dict[str, tuple[float, tuple[float, float]]] = {}
    for name, (js, comps) in judged.items():
        if name == BASELINE:
            continue
        differences[name] = paired_bootstrap_diff(
            agreement_scores(js, comps), agreement_scores(default, comps), seed=seed
        )
    baseline = None
    if surface is not None:
        versus = paired_bootstrap_diff(
            agreement_scores(constitution, test), agreement_scores(surface[0], test), seed=seed
        )
        baseline = dataclasses.replace(surface[1], constitution_minus_surface=versus)
    predictions = {
        name: {j.comparison_id: j.predicted for j in js}
        for name, (js, _) in judged.items()
        if name != "constitution_vs_flipped_labels"
    }
    return Evaluation(scores, differences, surface=baseline, explanations=explanations, predictions=predictions)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _surface(
    test: Sequence[Comparison], train: Sequence[Comparison] | None, *, seed: int
) -> tuple[list[Judgement], SurfaceBaseline] | None:
    """The surface baseline's judgements on `test` and its description (difference not yet filled in)."""
    if train:
        model = fit_surface(train, seed=seed)
        picks = model.predict(test)
        cv = cross_val_picks(train, seed=seed)
        cv_accuracy = None if cv is None else float(surface_agreement(cv, train).mean())
        info = SurfaceBaseline("train", len(train), model.weights(), cv_accuracy, None)
    else:
        folded = cross_val_picks(test, seed=seed)
        if folded is None:
            return None
        picks = folded
        weights = fit_surface(test, seed=seed).weights()
        info = SurfaceBaseline("cross-validated", 0, weights, float(surface_agreement(picks, test).mean()), None)
    return [Judgement(c.id, p, (p,)) for c, p in zip(test, picks, strict=True)], info


ConfidenceKind = Literal["logprob_margin", "vote_share"]


@dataclass(frozen=True)
class Prediction:
    """A predicted preference on one pair, how sure the judge was, and each principle's own pick."""

    comparison_id: str
    predicted: Pick
    """The constitution-following judge's verdict (`judge`): "a", "b", "neither" (no side), or "invalid"."""
    confidence: float | None
    """logprob_margin: |debiased log-odds of a over b| in nats (0: no opinion); vote_share: the share of the
    judge's answers, one per presentation order, that name the predicted side (1.0: both orders agree; 0.5: split).
    None when no answer was readable."""
    confidence_kind: ConfidenceKind
    principle_picks: tuple[Pick, ...]
    """One pick per principle, in the order given: the side it selects over both orders ("neither" when it does
    not apply, "invalid" when unreadable)."""


def predict(
    comparisons: Sequence[Comparison],
    llm: LLM,
    *,
    principles: Sequence[Principle],
    mode: VoteMode = "generate",
    batch_size: int = 40,
) -> list[Prediction]:
    """Predict the preferred response of each pair (labels are not read): the judge's verdict with the principles,
    its confidence, and each principle's vote (`icai.vote.vote`, both orders)."""
    judgements = judge(comparisons, llm, principles=[p.text for p in principles], desc="annotate: judge", mode=mode)
    votes = vote(comparisons, principles, llm, batch_size=batch_size, mode=mode) if principles else []
    picks_of = {(v.comparison_id, v.principle_id): debiased_pick(v.picks) for v in votes}
    out = []
    for c, j in zip(comparisons, judgements, strict=True):
        confidence: float | None
        if mode == "logprob":
            kind: ConfidenceKind = "logprob_margin"
            confidence = None if j.margin is None else abs(j.margin)
        else:
            kind = "vote_share"
            valid = [p for p in j.picks if p != "invalid"]
            named = j.predicted if j.predicted in ("a", "b") else None
            confidence = (
                None if not valid else (sum(p == named for p in valid) / len(valid) if named else 0.5)
            )
        principle_picks = tuple(picks_of.get((c.id, p.id), "invalid") for p in principles)
        out.append(Prediction(c.id, j.predicted, confidence, kind, principle_picks))
    return out


def labelled_agreement(
    predictions: Sequence[Prediction], comparisons: Sequence[Comparison], *, labelled: Sequence[bool]
) -> dict[str, Any]:
    """Agreement of the predictions, and of each principle's decisive picks, with the labels of the labelled pairs.

    Returns {"n", "agreement", "ci", "ci_method", "principles": [{"n_for", "n_against", "agreement", "ci"}]};
    a prediction of "neither" or "invalid" scores 0.5 (as in `agreement_scores`); intervals are Wilson's below
    `icai.stats.SMALL_N` pairs, else bootstrap.
    """
    pairs = [(p, c) for p, c, has in zip(predictions, comparisons, labelled, strict=True) if has]
    judgements = [Judgement(p.comparison_id, p.predicted, ()) for p, _ in pairs]
    values = agreement_scores(judgements, [c for _, c in pairs])
    ci, method = score_ci(values)
    per_principle = []
    k = len(predictions[0].principle_picks) if predictions else 0
    for i in range(k):
        n_for = sum(p.principle_picks[i] == c.preferred for p, c in pairs)
        n_against = sum(p.principle_picks[i] == c.rejected for p, c in pairs)
        decided = n_for + n_against
        per_principle.append(
            {
                "n_for": n_for,
                "n_against": n_against,
                "agreement": n_for / decided if decided else None,
                "ci": list(wilson_interval(n_for, decided)) if decided else None,
            }
        )
    return {
        "n": len(pairs),
        "agreement": float(values.mean()) if values.size else None,
        "ci": list(ci),
        "ci_method": method,
        "principles": per_principle,
    }
