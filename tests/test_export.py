"""Exports of a constitution: AnnotatedPairs, judge prompt, promptfoo YAML, Inspect scorer."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from icai import datasets
from icai.annotated_pairs import DEFAULT_ANNOTATOR_ID, annotated_pairs_stats, annotator_id, read_annotated_pairs
from icai.errors import DataError
from icai.export import (
    EXPORT_FORMATS,
    export,
    to_annotated_pairs,
    to_inspect_scorer,
    to_judge_prompt,
    to_promptfoo_yaml,
)
from icai.stats import principle_stats
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote

TEXTS = {
    "p1": "Select the response that answers in a full sentence.",
    "p2": 'Select the response that quotes a "source": {like this} # not a comment',
    "p3": "Select the response that is shorter.",
}
AID = {pid: annotator_id(text) for pid, text in TEXTS.items()}
PREFERRED = ["a", "b", "a", "b", "a", "b"]
VOTES = {
    "p1": ["for", "for", "for", "against", "abstain", "for"],
    "p2": ["for", "against", "against", "for", "invalid", "abstain"],
    "p3": ["abstain", "abstain", "for", "against", "for", "for"],
}


@pytest.fixture
def constitution() -> Constitution:
    return Constitution(
        tuple(Principle(pid, text) for pid, text in TEXTS.items()),
        tuple(PrincipleStats(pid, 3, 1, 1, 1, 0.75, 0.8) for pid in TEXTS),
        {"dataset_hash": "abc123hash", "dataset_name": "fake pairs"},
    )


@pytest.fixture
def comparisons() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(1, 7)],
            "prompt": [f"Question {i}?" for i in range(1, 7)],
            "text_a": [f"Answer A{i}." for i in range(1, 7)],
            "text_b": [f"Answer B{i}." for i in range(1, 7)],
            "preferred": PREFERRED,
            "split": ["train"] * 4 + ["test"] * 2,
        }
    )


@pytest.fixture
def votes() -> pd.DataFrame:
    rows = [
        {"comparison_id": f"c{i}", "principle_id": pid, "value": value, "picks": "", "raw": ""}
        for pid, values in VOTES.items()
        for i, value in enumerate(values, start=1)
    ]
    rows.append({"comparison_id": "c1", "principle_id": "not-in-constitution", "value": "for", "picks": "", "raw": ""})
    return pd.DataFrame(rows)


@pytest.fixture
def run_dir(tmp_path: Path, constitution: Constitution, comparisons: pd.DataFrame, votes: pd.DataFrame) -> Path:
    constitution.save(tmp_path / "constitution.json")
    comparisons.to_csv(tmp_path / "comparisons.csv", index=False)
    votes.to_csv(tmp_path / "votes.csv", index=False)
    return tmp_path


def _pairs(constitution: Constitution, comparisons: pd.DataFrame, votes: pd.DataFrame) -> dict:
    stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    return to_annotated_pairs(constitution, comparisons, votes, dataset_name="fake pairs", created_at=stamp)


def test_annotated_pairs_metadata_and_annotators(constitution, comparisons, votes) -> None:
    data = _pairs(constitution, comparisons, votes)
    meta = data["metadata"]
    assert meta["version"] == "2.0"
    assert meta["created_at"] == "2025-01-02T03:04:05Z"
    assert meta["dataset_name"] == "fake pairs"
    assert meta["available_metadata_keys_per_comparison"] == ["split"]
    # Feedback Forensics takes the human column under the id the reference derives from this description
    human = meta["default_annotator"]
    assert human == DEFAULT_ANNOTATOR_ID == "ba751e7b"
    assert set(data["annotators"]) == {human, *AID.values()}
    assert data["annotators"][human] == {
        "name": "preferred_text",
        "description": "Default annotator from original dataset (from column `preferred_text`)",
        "type": "unknown",
    }
    assert data["annotators"][AID["p2"]] == {"description": TEXTS["p2"], "type": "principle", "origin": "llm"}
    assert len(data["comparisons"]) == 6
    assert data["comparisons"][4]["metadata"] == {"split": "test"}
    assert data["comparisons"][0]["response_a"] == {"text": "Answer A1."}
    assert data["comparisons"][0]["prompt"] == "Question 1?"


def test_default_annotator_matches_the_reference_example() -> None:
    path = datasets.path("synthetic-annotated-pairs")
    example = json.loads(path.read_text(encoding="utf-8"))
    human = example["metadata"]["default_annotator"]
    assert human == DEFAULT_ANNOTATOR_ID
    assert annotator_id(example["annotators"][human]["description"]) == human
    for aid, info in example["annotators"].items():
        if info["type"] == "principle":
            assert annotator_id(info["description"]) == aid


def test_annotated_pairs_carry_input_metadata_and_models(constitution, comparisons, votes) -> None:
    comparisons["source"] = ["web", "", "web", "book", "book", "web"]
    comparisons["model_a"] = ["m1"] * 6
    comparisons["model_b"] = ["m2"] * 5 + [""]
    comparisons.loc[1, "prompt"] = ""
    data = _pairs(constitution, comparisons, votes)
    assert data["metadata"]["available_metadata_keys_per_comparison"] == ["split", "source"]
    first, second, last = data["comparisons"][0], data["comparisons"][1], data["comparisons"][5]
    assert first["metadata"] == {"split": "train", "source": "web"}
    assert second["metadata"] == {"split": "train"}  # an empty cell is a missing value
    assert second["prompt"] is None
    assert (first["response_a"], first["response_b"]) == ({"text": "Answer A1.", "model": "m1"}, {"text": "Answer B1.", "model": "m2"})
    assert last["response_b"] == {"text": "Answer B6."}


def test_annotated_pairs_prefs_follow_the_human_label(constitution, comparisons, votes) -> None:
    data = _pairs(constitution, comparisons, votes)
    human = data["metadata"]["default_annotator"]
    for comparison, preferred in zip(data["comparisons"], PREFERRED, strict=True):
        annotations = comparison["annotations"]
        assert annotations[human] == {"pref": preferred}
        assert set(annotations) == {human, *AID.values()}  # not-in-constitution is left out
    c = {row["id"]: row["annotations"] for row in data["comparisons"]}
    assert c["c1"][AID["p1"]] == {"pref": "a"}  # for, human preferred a
    assert c["c2"][AID["p1"]] == {"pref": "b"}  # for, human preferred b
    assert c["c2"][AID["p2"]] == {"pref": "a"}  # against, human preferred b
    assert c["c4"][AID["p1"]] == {"pref": "a"}  # against, human preferred b
    assert c["c1"][AID["p3"]] == {"pref": None, "no_pref_reason": "not_applicable"}  # abstain
    assert c["c5"][AID["p2"]] == {"pref": None, "no_pref_reason": "invalid"}


def test_annotated_pairs_read_back_give_icai_stats_on_each_split(constitution, comparisons, votes, tmp_path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(_pairs(constitution, comparisons, votes)), encoding="utf-8")
    pairs = read_annotated_pairs(path)
    assert [p.id for p in pairs.principles] == list(AID.values())
    assert [p.text for p in pairs.principles] == list(TEXTS.values())
    table = [
        Comparison(row.id, row.text_a, row.text_b, row.preferred, row.prompt, {"split": row.split})
        for row in comparisons.itertuples()
    ]
    originals = [
        Vote(row.comparison_id, row.principle_id, row.value, ())
        for row in votes.itertuples()
        if row.principle_id in TEXTS
    ]
    for split in ("train", "test"):
        subset = [c for c in table if c.metadata["split"] == split]
        expected = principle_stats(list(TEXTS), subset, originals)
        got = annotated_pairs_stats(pairs, where=("split", split))
        for e, g in zip(expected, got, strict=True):
            fields = ("n_for", "n_against", "n_abstain", "n_invalid", "relevance", "kappa", "strength")
            assert [getattr(g, f) for f in fields] == pytest.approx([getattr(e, f) for f in fields])
    with pytest.raises(DataError, match="no comparison has metadata 'split' = 'dev'"):
        pairs.where("split", "dev")


def test_annotated_pairs_missing_annotations_count_as_not_applicable(tmp_path) -> None:
    def pair(cid: str, annotations: dict) -> dict:
        return {"id": cid, "response_a": {"text": "x"}, "response_b": {"text": "y"}, "annotations": annotations}

    human, p = DEFAULT_ANNOTATOR_ID, annotator_id("Select the response that is x.")
    data = {
        "metadata": {"version": "2.0", "default_annotator": human},
        "annotators": {human: {"type": "unknown"}, p: {"description": "Select the response that is x.", "type": "principle"}},
        "comparisons": [
            pair("1", {human: {"pref": "a"}, p: {"pref": "a"}}),
            pair("2", {human: {"pref": "b"}, p: {"pref": "text_a"}}),
            pair("3", {human: {"pref": "a"}, p: {"pref": None, "no_pref_reason": "invalid"}}),
            pair("4", {human: {"pref": "a"}}),
            pair("5", {human: {"pref": "a"}, p: {"pref": None, "no_pref_reason": "both"}}),
            pair("6", {human: {"pref": None}, p: {"pref": "a"}}),  # no label: dropped, as Feedback Forensics does
        ],
    }
    path = tmp_path / "ff.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    (s,) = annotated_pairs_stats(path)
    assert (s.n_for, s.n_against, s.n_abstain, s.n_invalid) == (1, 1, 2, 1)
    assert (s.relevance, s.kappa, s.strength) == (pytest.approx(2 / 5), 0.0, 0.0)


def test_annotated_pairs_round_trip_through_json(constitution, comparisons, votes) -> None:
    data = _pairs(constitution, comparisons, votes)
    assert json.loads(json.dumps(data)) == data


def test_annotated_pairs_reject_bad_labels(constitution, comparisons, votes) -> None:
    comparisons.loc[2, "preferred"] = "c"
    with pytest.raises(DataError, match="row 3.*'preferred'"):
        _pairs(constitution, comparisons, votes)


def test_judge_prompt_lists_principles_in_rank_order(constitution) -> None:
    prompt = to_judge_prompt(constitution)
    positions = [prompt.index(f"{rank}. {text}") for rank, text in enumerate(TEXTS.values(), start=1)]
    assert positions == sorted(positions)


def test_promptfoo_yaml_parses_to_one_llm_rubric(constitution) -> None:
    config = yaml.safe_load(to_promptfoo_yaml(constitution))
    (assertion,) = config["defaultTest"]["assert"]
    assert assertion["type"] == "llm-rubric"
    rubric = assertion["value"]
    assert "1. The response answers in a full sentence." in rubric
    assert '2. The response quotes a "source": {like this} # not a comment' in rubric
    assert rubric.index("answers in a full sentence") < rubric.index("is shorter")


def test_inspect_scorer_compiles_and_carries_the_principles(constitution) -> None:
    source = to_inspect_scorer(constitution)
    compile(source, "constitution_scorer.py", "exec")
    assert "model_graded_qa(instructions=INSTRUCTIONS" in source
    namespace: dict = {}
    # run everything except the inspect_ai import, which is not installed here
    body = source.split("@scorer")[0].replace("from inspect_ai.scorer import", "# from inspect_ai.scorer import")
    exec(compile(body, "constitution_scorer.py", "exec"), namespace)
    assert namespace["PRINCIPLES"] == list(TEXTS.values())
    assert "GRADE: $LETTER" in namespace["INSTRUCTIONS"]


def test_empty_constitution_cannot_become_a_prompt() -> None:
    with pytest.raises(DataError, match="no principles"):
        to_judge_prompt(Constitution(()))


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_export_dispatches_and_writes(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out" / f"export-{fmt}"
    text = export(run_dir / "constitution.json", fmt, out)
    assert out.read_text(encoding="utf-8") == text
    assert "full sentence" in text


def test_export_annotated_pairs_reads_the_run_tables(run_dir: Path) -> None:
    data = json.loads(export(run_dir / "constitution.json", "annotated-pairs"))
    assert data["metadata"]["dataset_name"] == "fake pairs"
    assert len(data["annotators"]) == 4 and len(data["comparisons"]) == 6
    assert AID["p1"] in data["comparisons"][4]["annotations"]


def test_export_annotated_pairs_adds_held_out_votes(run_dir: Path) -> None:
    votes = pd.read_csv(run_dir / "votes.csv", dtype=str, keep_default_na=False)
    test_ids = {"c5", "c6"}
    votes[~votes["comparison_id"].isin(test_ids)].to_csv(run_dir / "votes.csv", index=False)
    data = json.loads(export(run_dir / "constitution.json", "annotated-pairs"))
    assert AID["p1"] not in data["comparisons"][4]["annotations"]
    votes[votes["comparison_id"].isin(test_ids)].to_csv(run_dir / "test_votes.csv", index=False)
    data = json.loads(export(run_dir / "constitution.json", "annotated-pairs"))
    assert data["comparisons"][4]["annotations"][AID["p1"]] == {"pref": None, "no_pref_reason": "not_applicable"}


def test_export_rejects_unknown_format(run_dir: Path) -> None:
    with pytest.raises(DataError, match="unknown export format 'csv'"):
        export(run_dir / "constitution.json", "csv")


def test_export_names_the_missing_file(run_dir: Path) -> None:
    (run_dir / "votes.csv").unlink()
    with pytest.raises(DataError, match=r"has no votes\.csv beside constitution\.json"):
        export(run_dir / "constitution.json", "annotated-pairs")
    with pytest.raises(DataError, match="constitution file not found"):
        export(run_dir / "nowhere.json", "prompt")


def test_annotated_pairs_refuse_two_principles_with_one_text(comparisons, votes) -> None:
    twins = Constitution((Principle("p1", TEXTS["p1"]), Principle("p9", TEXTS["p1"])))
    with pytest.raises(DataError, match="'p9' would get annotator id .* already taken by principle 'p1'"):
        _pairs(twins, comparisons, votes)


def test_annotated_pairs_annotators_carry_provenance(constitution, comparisons, votes) -> None:
    first, *rest = constitution.principles
    tagged = dataclasses.replace(first, origin="hint-fallback", hint="keywords")
    data = _pairs(dataclasses.replace(constitution, principles=(tagged, *rest)), comparisons, votes)
    entry = data["annotators"][AID[first.id]]
    assert entry["origin"] == "hint-fallback" and entry["hint"] == "keywords"
    assert all(data["annotators"][AID[p.id]]["origin"] == "llm" for p in rest)
