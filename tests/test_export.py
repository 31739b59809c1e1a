"""Exports of a constitution: AnnotatedPairs, judge prompt, promptfoo YAML, Inspect scorer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from icai.export import (
    FORMATS,
    export,
    to_annotated_pairs,
    to_inspect_scorer,
    to_judge_prompt,
    to_promptfoo_yaml,
)
from icai.types import Constitution, DataError, Principle, PrincipleStats

TEXTS = {
    "p1": "Select the response that answers in a full sentence.",
    "p2": 'Select the response that quotes a "source": {like this} # not a comment',
    "p3": "Select the response that is shorter.",
}
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
    human = meta["default_annotator"]
    assert set(data["annotators"]) == {human, "p1", "p2", "p3"}
    assert data["annotators"][human] == {
        "name": "preferred_text",
        "description": data["annotators"][human]["description"],
        "type": "unknown",
    }
    assert data["annotators"]["p2"] == {"description": TEXTS["p2"], "type": "principle"}
    assert len(data["comparisons"]) == 6
    assert data["comparisons"][4]["metadata"] == {"split": "test"}
    assert data["comparisons"][0]["response_a"] == {"text": "Answer A1."}


def test_annotated_pairs_prefs_follow_the_human_label(constitution, comparisons, votes) -> None:
    data = _pairs(constitution, comparisons, votes)
    human = data["metadata"]["default_annotator"]
    for comparison, preferred in zip(data["comparisons"], PREFERRED, strict=True):
        annotations = comparison["annotations"]
        assert annotations[human] == {"pref": preferred}
        assert "not-in-constitution" not in annotations
    c = {row["id"]: row["annotations"] for row in data["comparisons"]}
    assert c["c1"]["p1"] == {"pref": "a"}  # for, human preferred a
    assert c["c2"]["p1"] == {"pref": "b"}  # for, human preferred b
    assert c["c2"]["p2"] == {"pref": "a"}  # against, human preferred b
    assert c["c4"]["p1"] == {"pref": "a"}  # against, human preferred b
    assert c["c1"]["p3"] == {"pref": None, "no_pref_reason": "not_applicable"}  # abstain
    assert c["c5"]["p2"] == {"pref": None, "no_pref_reason": "invalid"}


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


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_dispatches_and_writes(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out" / f"export-{fmt}"
    text = export(run_dir / "constitution.json", fmt, out)
    assert out.read_text(encoding="utf-8") == text
    assert "full sentence" in text


def test_export_annotated_pairs_reads_the_run_tables(run_dir: Path) -> None:
    data = json.loads(export(run_dir / "constitution.json", "annotated-pairs"))
    assert data["metadata"]["dataset_name"] == "fake pairs"
    assert len(data["annotators"]) == 4 and len(data["comparisons"]) == 6


def test_export_rejects_unknown_format(run_dir: Path) -> None:
    with pytest.raises(DataError, match="unknown export format 'csv'"):
        export(run_dir / "constitution.json", "csv")


def test_export_names_the_missing_file(run_dir: Path) -> None:
    (run_dir / "votes.csv").unlink()
    with pytest.raises(DataError, match=r"votes\.csv: file not found"):
        export(run_dir / "constitution.json", "annotated-pairs")
    with pytest.raises(DataError, match="constitution file not found"):
        export(run_dir / "nowhere.json", "prompt")
