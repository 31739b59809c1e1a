"""The surface-feature baseline (icai.surface) and its place in the evaluation, the CLI and the report."""

import json
import random

import numpy as np
import pytest

from icai.evaluate import evaluate
from icai.llm import LLM
from icai.llm.fake import FakeProvider
from icai.surface import (
    FEATURES,
    SurfaceBaseline,
    cross_val_picks,
    fit_surface,
    pair_features,
    pair_form_hint,
    response_features,
    separating_features,
)
from icai.surface import agreement as surface_agreement
from icai.types import Comparison

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega".split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def _pairs(n: int, *, seed: int, longer_wins: bool, prefix: str = "p") -> list[Comparison]:
    """Pairs of one short and one long response, the long one on a random side.

    longer_wins: the label is the longer side; otherwise a coin flip independent of length.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        short, long = _sentence(rng, rng.randint(3, 8)), " ".join(_sentence(rng, 10) for _ in range(rng.randint(2, 5)))
        long_side = rng.choice("ab")
        a, b = (long, short) if long_side == "a" else (short, long)
        preferred = long_side if longer_wins else rng.choice("ab")
        out.append(Comparison(f"{prefix}{i}", a, b, preferred, prompt="Say something."))  # type: ignore[arg-type]
    return out


def test_response_features_count_what_they_say() -> None:
    text = (
        "# Title\n\nSure, I think this **might** help. Thank you!\n"
        "- one\n- two\n1. three\n\n```python\nprint(1)\n```\nSee https://example.org or [docs](http://x.y). Why?"
    )
    f = dict(zip(FEATURES, response_features(text), strict=True))
    assert f["chars"] == len(text) and f["words"] == len(text.split())
    assert f["headers"] == 1 and f["list_items"] == 3 and f["bold"] == 1 and f["code_blocks"] == 1
    assert f["links"] == 2 and f["questions"] == 1
    assert f["hedges"] == 2 and f["politeness"] == 1  # "I think", "might"; "Thank you"
    assert dict(zip(FEATURES, response_features("I can\u2019t help with that. As an AI, I won't."), strict=True))[
        "refusals"
    ] == 3
    assert not response_features("").any()


def test_pair_features_are_normalised_and_antisymmetric() -> None:
    c = Comparison("x", "one two three four", "one two", "a")
    x = pair_features([c, Comparison("y", c.text_b, c.text_a, "b")])
    words = FEATURES.index("words")
    assert x[0, words] == pytest.approx((4 - 2) / (4 + 2))
    np.testing.assert_allclose(x[0], -x[1])
    assert x[0, FEATURES.index("headers")] == 0.0  # both 0: no division by zero
    assert pair_features([]).shape == (0, len(FEATURES))


def test_baseline_finds_length_when_the_longer_side_always_wins() -> None:
    train, test = _pairs(60, seed=1, longer_wins=True), _pairs(40, seed=2, longer_wins=True, prefix="t")
    model = fit_surface(train)
    assert surface_agreement(model.predict(test), test).mean() >= 0.95
    assert model.weights()["words"] > 0 and model.weights()["chars"] > 0


def test_baseline_is_near_chance_when_length_is_independent_of_the_label() -> None:
    train, test = _pairs(200, seed=3, longer_wins=False), _pairs(200, seed=4, longer_wins=False, prefix="t")
    held_out = surface_agreement(fit_surface(train).predict(test), test).mean()
    assert 0.4 <= held_out <= 0.6


def test_baseline_edge_cases() -> None:
    # no training data: all-zero weights, every pair a tie (0.5)
    empty = fit_surface([])
    assert set(empty.predict(_pairs(3, seed=0, longer_wins=True))) == {"neither"}
    # one-class labels: the mirrored copies still give two classes, and the signal is learnt
    one_class = [c for c in _pairs(80, seed=5, longer_wins=True) if c.preferred == "a"]
    assert {c.preferred for c in one_class} == {"a"}
    test = _pairs(30, seed=6, longer_wins=True, prefix="t")
    assert surface_agreement(fit_surface(one_class).predict(test), test).mean() >= 0.9
    # identical responses: constant (zero) features, no fit, ties
    same = [Comparison(f"s{i}", "Same text.", "Same text.", "ab"[i % 2]) for i in range(4)]  # type: ignore[arg-type]
    model = fit_surface(same)
    assert model.weights() == dict.fromkeys(FEATURES, 0.0) and set(model.predict(same)) == {"neither"}
    # tiny sets
    one = _pairs(1, seed=7, longer_wins=True)
    assert cross_val_picks(one) is None
    assert len(cross_val_picks(_pairs(2, seed=7, longer_wins=True)) or []) == 2
    assert fit_surface(one).predict(one) == [one[0].preferred]


def test_fit_is_seeded_and_position_neutral() -> None:
    train = _pairs(50, seed=8, longer_wins=True)
    assert fit_surface(train, seed=3) == fit_surface(train, seed=3)
    swapped = [Comparison(c.id, c.text_b, c.text_a, c.rejected) for c in train]
    np.testing.assert_allclose(fit_surface(train).coefficients, fit_surface(swapped).coefficients, atol=1e-6)


class _CountingJudge:
    """Answers every judge request with A; counts requests."""

    def __init__(self) -> None:
        self.provider = FakeProvider(lambda request: '{"preferred": "A"}')

    def llm(self) -> LLM:
        return LLM(self.provider, progress=False, max_attempts=1)


def test_evaluate_reports_the_surface_baseline_without_model_calls() -> None:
    train, test = _pairs(40, seed=9, longer_wins=True), _pairs(20, seed=10, longer_wins=True, prefix="t")
    kwargs = {"constitution_texts": ["Select the response that is longer."], "candidate_texts": [], "seed": 0}
    without, with_train = _CountingJudge(), _CountingJudge()
    evaluate(test, without.llm(), **kwargs)  # type: ignore[arg-type]
    result = evaluate(test, with_train.llm(), train=train, **kwargs)  # type: ignore[arg-type]
    assert len(with_train.provider.requests) == len(without.provider.requests) == 2 * 2 * len(test)
    surface = result.score_for("surface")
    assert surface is not None and surface.agreement >= 0.95 and surface.n == len(test)
    assert surface.ci[0] <= surface.agreement <= surface.ci[1]
    assert result.surface is not None and result.surface.fit == "train" and result.surface.n_train == len(train)
    assert result.surface.cv_accuracy is not None and result.surface.cv_accuracy >= 0.9
    # the always-"A" judge abstains (0.5 everywhere): the constitution explains ~0.5 points less than length
    mean, (lo, hi) = result.surface.constitution_minus_surface or (0.0, (0.0, 0.0))
    assert mean == pytest.approx(0.5 - surface.agreement) and lo <= mean <= hi < 0
    assert "surface" in result.differences  # surface - default
    data = json.loads(json.dumps(result.to_dict()))
    assert data["surface"]["coefficients"].keys() == set(FEATURES)
    assert set(data["surface"]["constitution_minus_surface"]) == {"mean", "ci"}
    assert SurfaceBaseline.from_dict(data["surface"]) == result.surface


def test_evaluate_leaves_surface_out_for_a_single_pair_without_training_data() -> None:
    test = _pairs(1, seed=11, longer_wins=True)
    result = evaluate(test, _CountingJudge().llm(), constitution_texts=[], candidate_texts=[])
    assert result.score_for("surface") is None and result.surface is None


# --- form signals for the proposal stage ------------------------------------------------------


def test_separating_features_find_length_and_only_when_it_separates() -> None:
    concise = [Comparison(c.id, c.text_a, c.text_b, c.rejected) for c in _pairs(20, seed=12, longer_wins=True)]
    signals = separating_features(concise)
    assert any(s.feature == "words" and s.direction == "less" for s in signals)
    words = next(s for s in signals if s.feature == "words")
    assert words.hint == "form:words:less" and "shorter" in words.phrase and words.n_agree == words.n_differ == 20
    assert pair_form_hint(concise[0], signals) is not None
    assert not any(s.feature == "words" for s in separating_features(_pairs(200, seed=13, longer_wins=False)))
    assert separating_features(concise[:3]) == []  # too few pairs to tell
