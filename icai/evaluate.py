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
from typing import Any

import numpy as np

from icai.debias import SWAP, debiased_margin, debiased_pick, margin_pick
from icai.llm.client import LLM
from icai.parse import parse_verdict
from icai.prompts import judge_request
from icai.select import VoteMatrix, greedy
from icai.split import train_test_split as train_test_split  # re-exported: its old home
from icai.stats import bootstrap_ci, direction, paired_bootstrap_diff
from icai.surface import SurfaceBaseline, cross_val_picks, fit_surface
from icai.surface import agreement as surface_agreement
from icai.types import Comparison, Pick, Vote
from icai.vote import VoteMode

log = logging.getLogger(__name__)

BASELINE = "default"
"""The score every other score is compared with: the judge without principles."""

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
            out.append(Judgement(c.id, pick, (pick,)))
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agreement": self.agreement,
            "ci": list(self.ci),
            "n": self.n,
            "n_invalid": self.n_invalid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        lo, hi = data["ci"]
        return cls(
            data["name"], float(data["agreement"]), (float(lo), float(hi)), int(data["n"]), int(data["n_invalid"])
        )


def score(name: str, judgements: Sequence[Judgement], comparisons: Sequence[Comparison], *, seed: int = 0) -> Score:
    """Agreement of `judgements` with the labels of `comparisons`, with a percentile bootstrap CI."""
    values = agreement_scores(judgements, comparisons)
    ids = {c.id for c in comparisons}
    n_invalid = sum(1 for j in judgements if j.comparison_id in ids and j.predicted == "invalid")
    mean = float(values.mean()) if values.size else math.nan
    return Score(name, mean, bootstrap_ci(values, seed=seed), len(comparisons), n_invalid)


@dataclass(frozen=True)
class Evaluation:
    """Scores of several annotators on one test set, and each one's paired difference from "default"."""

    scores: tuple[Score, ...]
    differences: Mapping[str, tuple[float, tuple[float, float]]] = field(default_factory=dict)
    curve: SelectionCurve | None = None
    surface: SurfaceBaseline | None = None
    """How the "surface" score was fitted, its weights, and constitution - surface (None when not computed)."""

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
    """
    if not test:
        raise ValueError("evaluate needs at least one test comparison")
    flipped_test = [c.with_preferred(c.rejected) for c in test]
    judged: dict[str, tuple[list[Judgement], list[Comparison]]] = {}
    constitution = judge(test, llm, principles=constitution_texts, desc="judge: constitution", mode=mode)
    judged["constitution"] = (constitution, list(test))
    default = judge(test, llm, desc="judge: default", mode=mode)
    judged[BASELINE] = (default, list(test))
    k = len(constitution_texts)
    pool = list(candidate_texts)
    if k and pool:
        drawn = random.Random(seed).sample(pool, min(k, len(pool)))
        log.info("random constitution: %s", drawn)
        judged["random"] = (judge(test, llm, principles=drawn, desc="judge: random", mode=mode), list(test))
    surface = _surface(test, train, seed=seed)
    if surface is not None:
        judged[SURFACE] = (surface[0], list(test))
    if flipped_constitution_texts is not None:
        flipped = judge(test, llm, principles=flipped_constitution_texts, desc="judge: flipped", mode=mode)
        judged["flipped"] = (flipped, flipped_test)
        judged["constitution_vs_flipped_labels"] = (constitution, flipped_test)

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
    return Evaluation(scores, differences, surface=baseline)


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
