"""Subgroups (icai.groups), targets (icai.target) and `icai run/evaluate --by`: a planted difference is found, none is invented."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from icai.cli import main
from icai.errors import DataError
from icai.groups import analyse_groups, group_labels
from icai.target import HUMAN_PREFERRED, TARGET_PREFERRED, Target, retarget
from icai.types import Comparison, Principle, Vote

P_CAT = Principle.from_text("Select the response that mentions 'cat' in its text.")
P_BLUE = Principle.from_text("Select the response that mentions 'blue' in its text.")


def _votes(n: int, *, seed: int, rule_in_b: float) -> tuple[list[Comparison], list[Vote]]:
    """n pairs in groups A/B: P_CAT agrees with the label always in A and with probability rule_in_b in B; P_BLUE 0.8 in both."""
    rng = random.Random(seed)
    comps, votes = [], []
    for i in range(n):
        group = "A" if i % 2 == 0 else "B"
        c = Comparison(f"c{i}", "x", "y", "a" if rng.random() < 0.5 else "b", metadata={"annotator": group})
        comps.append(c)
        cat = group == "A" or rng.random() < rule_in_b
        votes.append(Vote(c.id, P_CAT.id, "for" if cat else "against"))
        votes.append(Vote(c.id, P_BLUE.id, "for" if rng.random() < 0.8 else "against"))
    return comps, votes


def test_a_rule_that_holds_in_one_group_only_is_found_and_significant() -> None:
    comps, votes = _votes(120, seed=1, rule_in_b=0.5)
    analysis = analyse_groups([P_CAT, P_BLUE], comps, votes, group_labels(comps, "annotator"), seed=0)
    by_id = {p.principle_id: p for p in analysis.principles}
    (cat_test,) = by_id[P_CAT.id].tests
    assert cat_test.significant and cat_test.q_value is not None and cat_test.q_value < 0.01
    assert cat_test.group == "A" and cat_test.other == "B" and cat_test.difference is not None
    assert 0.6 < cat_test.difference < 1.4
    lo, hi = cat_test.difference_ci or (0, 0)
    assert lo > 0 < hi
    (blue_test,) = by_id[P_BLUE.id].tests
    assert not blue_test.significant
    assert [t.principle_id for t in analysis.top_differences()] == [P_CAT.id]
    strengths = {g.group: g.strength for g in by_id[P_CAT.id].groups}
    assert strengths["A"] == 1.0 and strengths["B"] is not None and strengths["B"] < 0.5
    assert "in A vs B" in analysis.summary()[0]


def test_random_splits_of_one_dataset_show_no_significant_difference() -> None:
    comps, votes = _votes(200, seed=2, rule_in_b=1.0)  # both rules hold alike in A and B
    rng = np.random.default_rng(0)
    significant = 0
    for split in range(20):
        shuffled = [
            Comparison(c.id, c.text_a, c.text_b, c.preferred, metadata={"half": str(int(rng.integers(0, 2)))})
            for c in comps
        ]
        analysis = analyse_groups(
            [P_CAT, P_BLUE], shuffled, votes, group_labels(shuffled, "half"), seed=split, n_permutations=500
        )
        significant += any(t.significant for t in analysis.tests)
    assert significant <= 3  # 20 splits x 2 principles at alpha 0.05: about 1 expected by chance


def test_small_groups_are_shown_but_not_tested() -> None:
    comps, votes = _votes(60, seed=3, rule_in_b=0.5)
    comps = [
        Comparison(c.id, c.text_a, c.text_b, c.preferred, metadata={"g": "tiny" if i < 6 else c.metadata["annotator"]})
        for i, c in enumerate(comps)
    ]
    analysis = analyse_groups([P_CAT], comps, votes, group_labels(comps, "g"))
    tests = {t.group: t for t in analysis.tests}
    assert not tests["tiny"].tested and tests["tiny"].p_value is None and "fewer than 10" in tests["tiny"].reason
    assert tests["A"].tested and tests["B"].tested
    assert {g.group for g in analysis.principles[0].groups} == {"A", "B", "tiny"}
    assert any("not tested" in line for line in analysis.summary())
    assert "*" in analysis.table()


def test_quantile_bins_of_dates_are_ordered_and_balanced() -> None:
    comps = [
        Comparison(f"c{i}", "x", "y", "a", metadata={"time": f"2024-{1 + i % 12:02d}-15"}) for i in range(120)
    ] + [Comparison("none", "x", "y", "a", metadata={"time": ""})]
    grouping = group_labels(comps, "time", bins=4)
    assert grouping.ordered and len(grouping.groups) == 4 and grouping.n_missing == 1
    assert grouping.groups[0].startswith("1: 2024-01-15") and grouping.groups[-1].endswith("2024-12-15")
    assert sorted(grouping.sizes().values()) == [30, 30, 30, 30]
    with pytest.raises(DataError, match="neither a number nor a date"):
        group_labels([*comps, Comparison("bad", "x", "y", "a", metadata={"time": "soon"})], "time", bins=4)
    with pytest.raises(DataError, match="no such column"):
        group_labels(comps, "when")


def test_drift_in_time_is_found_in_the_right_bin() -> None:
    comps, votes = [], []
    for i in range(160):
        c = Comparison(f"c{i}", "x", "y", "a", metadata={"step": i})
        comps.append(c)
        votes.append(Vote(c.id, P_CAT.id, "for" if i < 80 or i % 4 == 0 else "against"))  # the rule fades after step 80
    analysis = analyse_groups([P_CAT], comps, votes, group_labels(comps, "step", bins=4))
    strengths = [g.strength for g in analysis.principles[0].groups]
    assert strengths[0] == strengths[1] == 1.0 and strengths[2] is not None and strengths[2] < 0
    assert {t.group for t in analysis.top_differences()} >= {analysis.groups[2], analysis.groups[3]}


def _arena_pairs() -> list[Comparison]:
    return [
        Comparison("1", "hi from x", "hi from y", "b", metadata={"model_a": "X", "model_b": "Y"}),
        Comparison("2", "hi from y", "hi from x", "b", metadata={"model_a": "Y", "model_b": "X"}),
        Comparison("3", "z", "y", "a", metadata={"model_a": "Z", "model_b": "Y"}),
        Comparison("4", "x", "x", "a", metadata={"model_a": "X", "model_b": "X"}),
    ]


def test_target_model_relabels_to_the_models_side_and_counts_what_it_drops() -> None:
    out = retarget(_arena_pairs(), "model:X")
    assert [c.preferred for c in out.comparisons] == ["a", "b"]
    assert [c.metadata[HUMAN_PREFERRED] for c in out.comparisons] == ["b", "b"]
    assert [c.metadata[TARGET_PREFERRED] for c in out.comparisons] == ["no", "yes"]
    assert (out.n_dropped_neither, out.n_dropped_both) == (1, 1)
    assert "which response is X's" in (out.note() or "")
    assert retarget(_arena_pairs(), "label").comparisons == tuple(_arena_pairs())
    with pytest.raises(DataError, match="model:NAME"):
        Target.parse("models:X")
    with pytest.raises(DataError, match="--model-a-col"):
        retarget(_arena_pairs(), "model:X", model_a_col="left")
    with pytest.raises(DataError, match="exactly one side"):
        retarget(_arena_pairs(), "model:W")


def planted_csv(path: Path, *, n: int = 80, seed: int = 0) -> Path:
    """'blue' is preferred in every pair; 'cat' over 'dog' only for annotator A (at random for B); `half` is random."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        group = "A" if i % 2 == 0 else "B"
        fav, dis = ["the blue shirt is nice"], ["the green shirt is fine"]
        if group == "A" or rng.random() < 0.5:
            fav.append("my cat sleeps")
            dis.append("my dog barks")
        else:
            fav.append("my dog barks")
            dis.append("my cat sleeps")
        good, bad = " and ".join(fav), " and ".join(dis)
        swap = rng.random() < 0.5
        rows.append(
            {
                "id": f"p{i}",
                "prompt": "Tell me about your day",
                "text_a": bad if swap else good,
                "text_b": good if swap else bad,
                "preferred_text": "text_b" if swap else "text_a",
                "annotator": group,
                "half": rng.choice(["x", "y"]),
            }
        )
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


FAKE = ["--model", "fake/keyword", "--embedder", "hash", "--bootstrap", "0"]


def test_run_by_column_finds_the_planted_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = planted_csv(tmp_path / "planted.csv")
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *FAKE, "--by", "annotator", "--per-group-constitution"]) == 0
    printed = capsys.readouterr().out
    assert "Strength by annotator" in printed
    groups = json.loads((out / "groups.json").read_text())
    assert groups["schema"] == "icai.groups/1" and groups["groups"] == ["A", "B"]
    texts = {p["principle_id"]: p["text"] for p in groups["principles"]}
    significant = {texts[t["principle_id"]] for t in groups["top_differences"]}
    assert any("'cat'" in t for t in significant)
    assert not any("'blue'" in t for t in significant)
    assert "cat" in " ".join(r["text"] for r in groups["per_group_constitutions"]["A"])
    assert 'id="groups"' in (out / "report.html").read_text()
    # the same run split by a random column: nothing differs; and without --by the old groups.json goes
    assert main(["run", str(data), "--out", str(out), *FAKE, "--by", "half"]) == 0
    assert json.loads((out / "groups.json").read_text())["top_differences"] == []
    assert main(["run", str(data), "--out", str(out), *FAKE]) == 0
    assert not (out / "groups.json").exists()


def test_by_errors_are_one_sentence_before_any_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = planted_csv(tmp_path / "planted.csv", n=20)
    assert main(["run", str(data), "--out", str(tmp_path / "r"), *FAKE, "--by", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--by nope: no such column" in err and "annotator" in err
    assert not (tmp_path / "r").exists()
    assert main(["run", str(data), "--out", str(tmp_path / "r"), *FAKE, "--bins", "3"]) == 2
    assert "--bins needs --by" in capsys.readouterr().err


def test_evaluate_by_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = planted_csv(tmp_path / "planted.csv")
    constitution = tmp_path / "c.json"
    from icai.types import Constitution

    Constitution((P_CAT, P_BLUE)).save(constitution)
    code = main(["evaluate", str(data), "--constitution", str(constitution), "--model", "fake/keyword", "--by", "annotator"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Strength by annotator" in printed
    assert "'cat' in its text.\": strength +1.00 in A vs B" in printed


def test_target_model_by_whether_the_humans_preferred_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """alpha's responses are recognised by 'certainly'; the humans reward alpha's responses when they hold 'example'."""
    rng = random.Random(7)
    rows = []
    for i in range(120):
        example = rng.random() < 0.5
        alpha = "Certainly! Water it weekly." + (" For example, on Sundays." if example else "")
        other = "Indeed, water it weekly." + ("" if example else " For example, on Sundays.")
        swap = rng.random() < 0.5
        rows.append({
            "id": f"p{i}", "prompt": "How do I water a cactus?",
            "text_a": other if swap else alpha, "text_b": alpha if swap else other,
            # the human prefers the response with the example
            "preferred_text": ("text_b" if swap else "text_a") if example else ("text_a" if swap else "text_b"),
            "model_a": "gamma" if swap else "alpha", "model_b": "alpha" if swap else "gamma",
        })
    data = tmp_path / "arena.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "run"
    args = ["run", str(data), "--out", str(out), *FAKE, "--target", "model:alpha", "--by", "target_preferred"]
    assert main(args) == 0
    assert "which response is alpha's; 120 pairs kept" in capsys.readouterr().out
    constitution = json.loads((out / "constitution.json").read_text())
    assert any("'certainly'" in p["text"] for p in constitution["principles"])
    groups = json.loads((out / "groups.json").read_text())
    assert groups["target"]["target"] == "model:alpha" and groups["groups"] == ["no", "yes"]
    certainly = next(p for p in groups["principles"] if "'certainly'" in p["text"])
    assert not any(t["significant"] for t in certainly["tests"])  # alpha always says it, won or lost
    # alpha's example marks exactly the pairs alpha wins: a user principle, voted by evaluate
    from icai.types import Constitution

    mine = tmp_path / "mine.json"
    example = Principle.from_text("Select the response that mentions 'example' in its text.")
    Constitution((P_CAT, example)).save(mine)
    evaluate = ["evaluate", str(data), "--constitution", str(mine), "--model", "fake/keyword", "--target", "model:alpha"]
    assert main([*evaluate, "--by", "target_preferred"]) == 0
    printed = capsys.readouterr().out
    assert "'example' in its text.\": strength -1.00 in no vs yes +1.00" in printed


def test_a_unanimous_group_gets_an_interval_that_narrows_with_its_size() -> None:
    from icai.groups import strength_interval

    rng = np.random.default_rng(0)
    small, large = strength_interval(np.ones(3), 200, rng), strength_interval(np.ones(300), 200, rng)
    assert small[1] == large[1] == 1.0 and small[0] < 0.5 < 0.95 < large[0]
    lo, hi = strength_interval(np.zeros(40), 200, rng)
    assert lo < 0 < hi and hi < 0.2


def test_a_principle_decisive_in_one_group_only_is_reported_with_its_own_test() -> None:
    """10+ decisive votes in A and none in B: not hidden as "not tested", but "only in A" with A's interval and test."""
    comps, votes = [], []
    for i in range(40):
        group = "A" if i % 2 == 0 else "B"
        c = Comparison(f"c{i}", "x", "y", "a", metadata={"g": group})
        comps.append(c)
        votes.append(Vote(c.id, P_CAT.id, "for" if group == "A" else "abstain"))
    analysis = analyse_groups([P_CAT], comps, votes, group_labels(comps, "g"), seed=0)
    (test,) = analysis.tests
    assert test.tested and test.only_in == "A" and test.difference is None
    assert test.p_value is not None and test.p_value < 0.001 and test.significant  # 20 of 20 for: binomial
    assert analysis.top_differences() == [test]
    line = next(line for line in analysis.summary() if "decisive only in A" in line)
    assert "strength +1.00 [" in line and "on 20 decisive votes" in line and "0 decisive in B" in line
    table = analysis.table(width=70)
    assert "only in A (q" in table and "not tested" not in table
    assert max(len(row) for row in table.splitlines()) <= 70


def test_group_table_fits_the_width_and_wraps_the_principle() -> None:
    comps, votes = _votes(120, seed=1, rule_in_b=0.5)
    long = Principle.from_text("Select the response that mentions 'cat' in its text and " + "also says more " * 12)
    votes += [Vote(v.comparison_id, long.id, v.value) for v in votes if v.principle_id == P_CAT.id]
    analysis = analyse_groups([P_CAT, long], comps, votes, group_labels(comps, "annotator"), seed=0)
    for width in (60, 100, 200):
        lines = analysis.table(width=width).splitlines()
        assert max(len(line) for line in lines) <= width
    assert "also says more also says more" in " ".join(analysis.table(width=200).split())  # wrapped, not cut
