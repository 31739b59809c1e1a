"""The user's own principles (`icai test --principles`) open in Feedback Forensics 0.5.0 with icai's numbers,
selected into the constitution or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from interop_env import FF_PYTHON, feedback_forensics_metrics, needs

from icai import datasets
from icai.cli import main
from icai.types import stats_from_dict

pytestmark = pytest.mark.interop
_tool_installed = needs(FF_PYTHON, "Feedback Forensics")

MINE = [
    "Select the response that mentions 'cat' in its text.",
    "Select the response that mentions 'raspberry' in its text.",
    "Select the response that is shorter.",
]


def test_user_principles_export_with_feedback_forensics_numbers(tmp_path: Path) -> None:
    data = datasets.path("synthetic-orthogonal")
    principles = tmp_path / "mine.txt"
    principles.write_text("\n".join(MINE) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = ["test", str(data), "--principles", str(principles), "--out", str(out), "--model", "fake/keyword"]
    assert main(argv) == 0
    exported = tmp_path / "mine.annotated_pairs.json"
    assert main(["export", str(out), "--format", "annotated-pairs", "--out", str(exported)]) == 0

    rows = json.loads((out / "constitution.json").read_text(encoding="utf-8"))["user_principles"]
    assert any(not r["in_constitution"] for r in rows)  # the export carries unselected ones too
    [ff] = feedback_forensics_metrics([(exported, ("split", "train"))], work_dir=tmp_path)
    assert set(ff["principles"]) == set(MINE)
    for row in rows:
        s = stats_from_dict(row["stats"])
        icai = {"strength": s.strength, "relevance": s.relevance, "kappa": s.kappa}
        assert ff["principles"][row["text"]] == pytest.approx(icai, abs=1e-6)
