"""Reward weights: fitting on vote directions, held-out accuracy, JSON, the LLM-backed callable, the CLI export."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import icai
from icai.cli import main
from icai.errors import DataError
from icai.reward import REWARD_SCHEMA, ConstitutionReward, RewardWeights, fit_reward_weights
from icai.types import Comparison, Principle, Vote

PLANTED = {"strong": 0.9, "medium": 0.7, "noise": 0.5, "anti": 0.2}
"""principle -> probability that its vote picks the preferred side when it votes."""


def planted_data(n: int, *, seed: int, prefix: str = "c") -> tuple[list[Principle], list[Comparison], list[Vote]]:
    """Pairs with random labels; each principle votes on 80% of them and picks the preferred side at its planted rate."""
    rng = random.Random(seed)
    principles = [Principle(name, f"Select the response that is {name}.") for name in PLANTED]
    comparisons, votes = [], []
    for i in range(n):
        preferred = rng.choice("ab")
        other = "b" if preferred == "a" else "a"
        c = Comparison(f"{prefix}{i}", f"a{i}", f"b{i}", preferred)  # type: ignore[arg-type]
        comparisons.append(c)
        for p in principles:
            if rng.random() < 0.2:
                picks: tuple = ("neither", "neither")
            else:
                side = preferred if rng.random() < PLANTED[p.id] else other
                picks = (side, side)
            votes.append(Vote(c.id, p.id, "abstain", picks))
    return principles, comparisons, votes


def test_fit_recovers_planted_signs_and_order():
    principles, train, votes = planted_data(600, seed=1)
    w = fit_reward_weights(principles, votes, train, seed=0)
    by_id = dict(zip(w.principle_ids, w.weights, strict=True))
    assert by_id["strong"] > by_id["medium"] > by_id["noise"] > by_id["anti"]
    assert by_id["strong"] > 0 and by_id["medium"] > 0 and by_id["anti"] < 0
    assert abs(by_id["noise"]) < 0.3 * by_id["strong"]
    assert w.intercept == 0.0 and w.symmetric
    assert w.n_pairs == 600 and w.seed == 0
    assert 0.85 < w.train_accuracy <= 1.0
    assert w.held_out is None and w.held_out_note == "the run has no test split"


def test_fit_is_position_free_and_reproducible():
    principles, train, votes = planted_data(200, seed=2)
    w = fit_reward_weights(principles, votes, train, seed=3)
    d = np.array([1.0, -1.0, 0.0, 1.0])
    assert w.probability(d) + w.probability(-d) == pytest.approx(1.0)
    assert w.probability(np.zeros(4)) == 0.5
    assert fit_reward_weights(principles, votes, train, seed=3).weights == w.weights


def test_stronger_regularisation_shrinks_weights():
    principles, train, votes = planted_data(200, seed=4)
    loose = fit_reward_weights(principles, votes, train, c=10.0)
    tight = fit_reward_weights(principles, votes, train, c=0.01)
    assert np.abs(tight.weights).sum() < np.abs(loose.weights).sum()
    assert tight.regularization_c == 0.01


def test_asymmetric_fit_learns_the_label_lean_as_intercept():
    principles, train, votes = planted_data(300, seed=5)
    lean_a = [Comparison(c.id, c.text_a, c.text_b, "a") if i % 4 else c for i, c in enumerate(train)]
    w = fit_reward_weights(principles, votes, lean_a, symmetric=False)
    assert w.intercept > 0 and not w.symmetric


def test_held_out_accuracy_when_test_votes_cover_every_principle():
    principles, train, votes = planted_data(300, seed=6)
    _, test, test_votes = planted_data(200, seed=7, prefix="t")
    w = fit_reward_weights(principles, votes, train, test=test, test_votes=test_votes, seed=0)
    assert w.held_out is not None and w.held_out_note == ""
    assert w.held_out.n_pairs == 200
    lo, hi = w.held_out.ci
    assert lo <= w.held_out.accuracy <= hi
    assert w.held_out.accuracy > 0.8  # the planted signal generalises

    partial = [v for v in test_votes if v.principle_id != "anti"]
    w2 = fit_reward_weights(principles, votes, train, test=test, test_votes=partial)
    assert w2.held_out is None
    assert "3 of 4 principles" in w2.held_out_note and "anti" in w2.held_out_note


def test_fit_rejects_empty_inputs():
    principles, train, votes = planted_data(10, seed=8)
    with pytest.raises(DataError, match="at least one principle"):
        fit_reward_weights([], votes, train)
    with pytest.raises(DataError, match="at least one training pair"):
        fit_reward_weights(principles, votes, [])


def test_json_round_trip(tmp_path):
    principles, train, votes = planted_data(100, seed=9)
    _, test, test_votes = planted_data(50, seed=10, prefix="t")
    w = fit_reward_weights(principles, votes, train, test=test, test_votes=test_votes, seed=4, metadata={"annotator_model": "m"})
    data = w.to_dict()
    assert data["schema"] == REWARD_SCHEMA
    assert [p["id"] for p in data["principles"]] == list(PLANTED)
    assert set(data) >= {"intercept", "train_accuracy", "held_out", "n_pairs", "seed"}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(data))
    assert RewardWeights.load(path) == w
    assert RewardWeights.from_dict(json.loads(json.dumps(data))) == w


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema": "icai.constitution/1", "principles": []}))
    with pytest.raises(DataError, match="not icai reward weights"):
        RewardWeights.load(path)
    with pytest.raises(DataError, match="not found"):
        RewardWeights.load(tmp_path / "missing.json")


def keyword_weights(weights: dict[str, float]) -> RewardWeights:
    principles = tuple(Principle(w, f"Select the response that mentions '{w}' in its text.") for w in weights)
    return RewardWeights(principles, tuple(weights.values()), 0.0, 1.0, 10, 0)


def test_callable_scores_a_pair_the_right_way_round():
    llm = icai.get_llm("fake/keyword", progress=False)
    reward = ConstitutionReward(keyword_weights({"lemon": 2.0, "salt": -1.0}), llm)
    lemon, plain = "A lemon cake with sugar.", "A plain cake with sugar."
    p = reward("Bake a cake.", lemon, plain)
    assert p > 0.5
    assert reward("Bake a cake.", plain, lemon) == pytest.approx(1 - p)
    assert reward("Bake a cake.", plain, plain) == 0.5
    # a negative weight: the principle's pick counts against the response
    assert reward("Bake a cake.", "Salt crust.", "Sweet crust.") < 0.5
    # the principles were voted with icai's own vote requests, in both orders
    texts = [r.prompt_text for r in llm.provider.requests]
    assert all("For each numbered rule" in t for t in texts)
    assert any(t.index(lemon) < t.index(plain) for t in texts if lemon in t and plain in t)
    assert any(t.index(plain) < t.index(lemon) for t in texts if lemon in t and plain in t)


def test_score_many_matches_single_calls():
    llm = icai.get_llm("fake/keyword", progress=False)
    reward = ConstitutionReward(keyword_weights({"lemon": 1.5}), llm)
    pairs = [("q", "lemon pie", "apple pie"), ("q", "apple pie", "lemon pie"), ("q", "apple", "pear")]
    many = reward.score_many(pairs)
    assert many == [reward(*pair) for pair in pairs]
    assert many[0] > 0.5 > many[1] and many[2] == 0.5
    assert reward.score_many([]) == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from testdata import data_file

    out = tmp_path_factory.mktemp("reward") / "run"
    data = data_file("synthetic_data_orthogonal_adcbg.csv")
    args = ["run", str(data), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3", "--out", str(out)]
    assert main(args) == 0
    return out


def test_cli_reward_weights_export_on_a_run_dir(run_dir, tmp_path, capsys):
    out = tmp_path / "reward.json"
    assert main(["export", str(run_dir / "constitution.json"), "--format", "reward-weights", "--out", str(out)]) == 0
    w = RewardWeights.load(out)
    constitution = icai.Constitution.load(run_dir / "constitution.json")
    assert w.principle_ids == [p.id for p in constitution.principles]
    comparisons = pd.read_csv(run_dir / "comparisons.csv", dtype=str, keep_default_na=False)
    assert w.n_pairs == int((comparisons["split"] == "train").sum())
    # every constitution principle agrees with the training labels, so every weight is positive
    assert all(weight > 0 for weight in w.weights)
    assert w.train_accuracy > 0.5
    test_votes = pd.read_csv(run_dir / "test_votes.csv", dtype=str)
    missing = [pid for pid in w.principle_ids if pid not in set(test_votes["principle_id"])]
    if missing:
        assert w.held_out is None and all(pid in w.held_out_note for pid in missing)
    else:
        assert w.held_out is not None and w.held_out.n_pairs == int((comparisons["split"] == "test").sum())

    # the exported weights drive the callable: the top principle's word decides a pair
    reward = ConstitutionReward.from_file(out, llm=icai.get_llm("fake/keyword", progress=False))
    top = max(range(len(w.weights)), key=lambda i: w.weights[i])
    word = re.search(r"mentions '([^']+)'", w.principles[top].text).group(1)  # type: ignore[union-attr]
    with_word, without = f"The {word} was there all day.", "Nothing was there all day."
    assert reward("Tell me.", with_word, without) > 0.5 > reward("Tell me.", without, with_word)


def test_cli_reward_weights_without_test_split(tmp_path):
    from testdata import data_file

    out = tmp_path / "run"
    data = data_file("synthetic_data_orthogonal_adcbg.csv")
    assert main(["run", str(data), "--model", "fake/keyword", "--embedder", "hash", "--out", str(out)]) == 0
    assert main(["export", str(out / "constitution.json"), "--format", "reward-weights", "--out", str(tmp_path / "w.json")]) == 0
    w = RewardWeights.load(tmp_path / "w.json")
    assert w.held_out is None and w.held_out_note == "the run has no test split"
