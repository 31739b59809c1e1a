"""icai's Inspect scorer export imports in inspect-ai and grades a two-sample task with mockllm."""

from __future__ import annotations

from pathlib import Path

import pytest
from interop_env import INSPECT_PYTHON, export, needs, run_inspect_scorer

from icai.export import INSPECT_GRADE_INSTRUCTIONS, rubric
from icai.types import Constitution

pytestmark = pytest.mark.interop
_tool_installed = needs(INSPECT_PYTHON, "inspect-ai")

SAMPLES = [
    {"input": "Describe a cat.", "target": "A description of a cat."},
    {"input": "Name a fruit.", "target": "The name of a fruit."},
]
# mockllm answers in turn: a sample's generation, then its grading (max_samples=1 keeps the order)
OUTPUTS = [
    "A cat with whiskers.",
    "It mentions the cat and its whiskers, as the principles ask.\n\nGRADE: C",
    "A lemon.",
    "It ignores the principles that apply.\n\nGRADE: I",
]


def test_inspect_scorer_runs_and_scores(icai_run: Path, tmp_path: Path) -> None:
    module = export(icai_run, "inspect", "constitution_scorer.py")
    result = run_inspect_scorer(module, "constitution_scorer", samples=SAMPLES, outputs=OUTPUTS, work_dir=tmp_path)
    assert result["status"] == "success", result["error"]
    assert result["scores"] == [{"constitution_scorer": "C"}, {"constitution_scorer": "I"}]
    assert result["metrics"]["constitution_scorer/accuracy"] == 0.5
    # the grader saw the constitution as instructions, with the grade line the scorer parses
    grading = [text for text in result["model_inputs"] if "[Submission]" in text]
    assert len(grading) == 2
    expected = rubric(Constitution.load(icai_run / "constitution.json"))
    assert all(expected in text and INSPECT_GRADE_INSTRUCTIONS in text for text in grading)
