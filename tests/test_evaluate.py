"""Evaluation with fake judges: splitting, debiased judging, selection and baselines."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from icai.evaluate import (
    Evaluation,
    Judgement,
    SelectionCurve,
    agreement_scores,
    evaluate,
    forward_select,
    judge,
    predict_from_votes,
    score,
)
from icai.llm.base import Completion, LLMError, Request, TransientError
from icai.llm.client import LLM
from icai.split import train_test_split
from icai.types import Comparison, Vote

_BLOCK = re.compile(r"\[RESPONSE ([AB])\]\n(.*?)\n\[/RESPONSE \1\]", re.DOTALL)


def _responses(request: Request) -> dict[str, str]:
    return dict(_BLOCK.findall(request.prompt_text))


class AlwaysA:
    """A fully position-biased judge."""

    model = "fake/test"

    def complete(self, request: Request) -> Completion:
        return Completion(text='{"preferred": "A"}')


class PicksWord:
    """Prefers the response containing a keyword; says "A" when neither or both contain it.

    With `follow_rules`, the keyword is the first of `words` named in the prompt's
    principles, and there is no keyword (always "A") when no principle is given.
    """

    model = "fake/test"

    def __init__(
        self, word: str = "cat", *, follow_rules: bool = False, words: tuple[str, ...] = ("cat", "dog")
    ) -> None:
        self.word = word
        self.follow_rules = follow_rules
        self.words = words
        self.requests: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        word: str | None = self.word
        if self.follow_rules:
            rules = request.prompt_text.split("[/RESPONSE B]")[-1]
            word = next((w for w in self.words if w in rules), None)
        texts = _responses(request)
        has = {side: word is not None and word in texts[side] for side in "AB"}
        answer = "B" if has["B"] and not has["A"] else "A"
        return Completion(text=json.dumps({"preferred": answer}))


class Garbled:
    model = "fake/test"

    def complete(self, request: Request) -> Completion:
        return Completion(text="I cannot decide.")


class Failing:
    model = "fake/test"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def complete(self, request: Request) -> Completion:
        raise self.exc


def _pairs() -> list[Comparison]:
    """Six pairs where the cat response is preferred (cat on either side) and two without a cat."""
    out = []
    for i in range(6):
        cat, dog = f"A cat sat, take {i}.", f"A dog ran, take {i}."
        out.append(Comparison(f"k{i}", cat, dog, "a") if i % 2 == 0 else Comparison(f"k{i}", dog, cat, "b"))
    out.append(Comparison("n0", "Plain text one.", "Plain text two.", "a"))
    out.append(Comparison("n1", "Plain text three.", "Plain text four.", "b"))
    return out


def _llm(provider: object) -> LLM:
    return LLM(provider, progress=False, max_attempts=1)  # type: ignore[arg-type]


# --- train_test_split ------------------------------------------------------------------------


def _labelled(n_a: int, n_b: int) -> list[Comparison]:
    # distinct texts: copies of one pair would be kept on one side (icai.split.duplicate_groups)
    return [Comparison(f"x{i}", f"p{i}", f"q{i}", "a" if i < n_a else "b") for i in range(n_a + n_b)]


def test_split_is_stratified_seeded_disjoint_and_complete() -> None:
    data = _labelled(28, 12)
    train, test = train_test_split(data, test_size=0.25, seed=1)
    assert {c.id for c in train} | {c.id for c in test} == {c.id for c in data}
    assert not {c.id for c in train} & {c.id for c in test}
    assert Counter(c.preferred for c in test) == {"a": 7, "b": 3}
    assert len(train) == 30
    assert train_test_split(data, test_size=0.25, seed=1) == (train, test)
    assert train_test_split(data, test_size=0.25, seed=2)[1] != test
    # input order is kept within each part
    order = [c.id for c in data]
    assert [c.id for c in test] == sorted((c.id for c in test), key=order.index)


def test_split_edges() -> None:
    data = _labelled(2, 1)
    assert train_test_split(data, test_size=0) == (data, [])
    assert train_test_split(data, test_size=1) == ([], data)
    for size in (0.01, 0.99):
        train, test = train_test_split(data, test_size=size)
        assert len(train) >= 1 and len(test) >= 1
    train, test = train_test_split(_labelled(1, 1), test_size=0.5)
    assert len(train) == len(test) == 1
    assert train_test_split(_labelled(1, 0), test_size=0.3) == (_labelled(1, 0), [])
    assert train_test_split([], test_size=0.3) == ([], [])
    with pytest.raises(ValueError):
        train_test_split(data, test_size=1.5)


# --- judge -----------------------------------------------------------------------------------


def test_position_bias_cancels() -> None:
    pairs = _pairs()
    judgements = judge(pairs, _llm(AlwaysA()))
    assert [j.comparison_id for j in judgements] == [c.id for c in pairs]
    assert all(j.predicted == "neither" and j.picks == ("a", "b") for j in judgements)
    assert agreement_scores(judgements, pairs).tolist() == [0.5] * len(pairs)


def test_judge_follows_content_and_sends_one_batch() -> None:
    pairs = _pairs()[:6]
    provider = PicksWord("cat")
    judgements = judge(pairs, _llm(provider), principles=["Select the response that mentions a cat."])
    assert len(provider.requests) == 12
    assert all("mentions a cat" in r.prompt_text for r in provider.requests)
    # the second request of each pair shows b first
    assert _responses(provider.requests[1])["A"] == pairs[0].text_b
    assert [j.predicted for j in judgements] == [c.preferred for c in pairs]
    assert all(j.picks == (c.preferred, c.preferred) for j, c in zip(judgements, pairs, strict=True))
    s = score("cat", judgements, pairs)
    assert (s.agreement, s.n, s.n_invalid) == (1.0, 6, 0)


def test_unreadable_answers_are_invalid_and_score_half() -> None:
    pairs = _pairs()[:3]
    judgements = judge(pairs, _llm(Garbled()))
    assert all(j.predicted == "invalid" for j in judgements)
    s = score("garbled", judgements, pairs)
    assert (s.agreement, s.n_invalid) == (0.5, 3)


@pytest.mark.parametrize("exc", [LLMError("boom"), TransientError("rate limited")])
def test_llm_failures_propagate(exc: Exception) -> None:
    with pytest.raises(LLMError):
        judge(_pairs(), _llm(Failing(exc)))


def test_agreement_scores_convention() -> None:
    pairs = _labelled(2, 2)
    picks = ["a", "a", "neither", "invalid"]
    judgements = [Judgement(c.id, p, ()) for c, p in zip(pairs, picks, strict=True)]  # type: ignore[arg-type]
    assert agreement_scores(judgements, pairs).tolist() == [1.0, 1.0, 0.5, 0.5]
    assert agreement_scores(judgements[::-1], pairs[2:]).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError):
        agreement_scores(judgements[:1], pairs)


# --- votes and forward selection ---------------------------------------------------------------


def _vote_matrix(seed: int = 0, n: int = 60) -> tuple[list[Comparison], list[Vote]]:
    """good1/good2 each match the label on a disjoint half (abstain elsewhere); noise is random; anti is wrong."""
    rng = np.random.default_rng(seed)
    comps = [Comparison(f"v{i}", "p", "q", "a" if rng.random() < 0.5 else "b") for i in range(n)]
    votes = []
    for i, c in enumerate(comps):
        other = c.rejected
        good1 = (c.preferred,) * 2 if i % 2 == 0 else ("neither", "neither")
        good2 = (c.preferred,) * 2 if i % 2 == 1 else ("neither", "neither")
        noise = ("a", "a") if rng.random() < 0.5 else ("b", "b")
        votes += [
            Vote(c.id, "noise", "abstain", noise),  # type: ignore[arg-type]
            Vote(c.id, "good1", "for", good1),  # type: ignore[arg-type]
            Vote(c.id, "anti", "against", (other, other)),
            Vote(c.id, "good2", "for", good2),  # type: ignore[arg-type]
        ]
    return comps, votes


def test_predict_from_votes() -> None:
    comps, votes = _vote_matrix()
    judgements = predict_from_votes(["good1", "good2"], votes, comps)
    assert agreement_scores(judgements, comps).mean() == 1.0
    assert judgements[0].picks == (comps[0].preferred, "neither")
    cancel = predict_from_votes(["good1", "anti"], votes, comps)
    assert {j.predicted for j in cancel[::2]} == {"neither"}
    assert predict_from_votes(["missing"], votes, comps)[0] == Judgement("v0", "neither", ("invalid",))


def test_forward_select_recovers_informative_principles_and_stops() -> None:
    comps, votes = _vote_matrix()
    curve = forward_select(["noise", "anti", "good1", "good2"], votes, comps)
    assert curve.principle_ids == ("good1", "good2")
    assert curve.agreement == pytest.approx((0.75, 1.0))
    assert forward_select(["noise", "good1", "good2"], votes, comps, max_principles=1).principle_ids == ("good1",)
    assert forward_select(["anti"], votes, comps) == SelectionCurve((), ())
    # the curve matches what predict_from_votes scores
    for k in (1, 2):
        judged = predict_from_votes(curve.principle_ids[:k], votes, comps)
        assert agreement_scores(judged, comps).mean() == pytest.approx(curve.agreement[k - 1])


# --- evaluate end to end ---------------------------------------------------------------------


def test_evaluate_end_to_end_and_round_trip() -> None:
    pairs = _pairs()
    provider = PicksWord(follow_rules=True)
    result = evaluate(
        pairs,
        _llm(provider),
        constitution_texts=["Select the response that mentions a cat."],
        candidate_texts=["Select the response that mentions a dog.", "Select the response that is polite."],
        flipped_constitution_texts=["Select the response that mentions a dog."],
        seed=0,
    )
    by_name = {s.name: s for s in result.scores}
    assert list(by_name) == ["constitution", "default", "random", "surface", "flipped", "constitution_vs_flipped_labels"]
    assert len(provider.requests) == 4 * 2 * len(pairs)  # constitution, default, random, flipped; no re-judging
    # six cat pairs right, two plain pairs "neither"
    assert by_name["constitution"].agreement == pytest.approx((6 + 0.5 * 2) / 8)
    assert by_name["default"].agreement == pytest.approx(0.5)
    assert by_name["flipped"].agreement == pytest.approx((6 + 0.5 * 2) / 8)
    assert by_name["constitution_vs_flipped_labels"].agreement == pytest.approx(0.5 * 2 / 8)
    for s in result.scores:
        assert s.n == len(pairs)
        assert s.ci[0] <= s.agreement <= s.ci[1]
    assert set(result.differences) == set(by_name) - {"default"}
    mean, (lo, hi) = result.differences["constitution"]
    assert mean == pytest.approx(6 * 0.5 / 8)
    assert lo <= mean <= hi and lo > 0
    assert result.differences["constitution_vs_flipped_labels"][0] == pytest.approx(-6 * 0.5 / 8)

    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"scores", "differences", "curve", "surface", "explanations"}
    assert data["surface"]["fit"] == "cross-validated"  # no training pairs were given
    assert set(data["scores"][0]) == {"name", "agreement", "ci", "n", "n_invalid", "ci_method"}
    assert set(data["differences"]["constitution"]) == {"mean", "ci"}
    assert data["curve"] is None
    assert Evaluation.from_dict(data) == result

    with_curve = Evaluation(
        result.scores, result.differences, SelectionCurve(("p1", "p2"), (0.7, 0.8)), surface=result.surface
    )
    data = json.loads(json.dumps(with_curve.to_dict()))
    assert data["curve"] == {"principle_ids": ["p1", "p2"], "agreement": [0.7, 0.8]}
    assert Evaluation.from_dict(data) == with_curve


def test_evaluate_is_seeded_and_skips_optional_baselines() -> None:
    pairs = _pairs()
    kwargs = {"constitution_texts": ["Select the response that mentions a cat."], "candidate_texts": []}
    result = evaluate(pairs, _llm(PicksWord(follow_rules=True)), **kwargs)  # type: ignore[arg-type]
    assert [s.name for s in result.scores] == ["constitution", "default", "surface"]
    assert evaluate(pairs, _llm(PicksWord(follow_rules=True)), **kwargs) == result  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        evaluate([], _llm(AlwaysA()), constitution_texts=[], candidate_texts=[])
