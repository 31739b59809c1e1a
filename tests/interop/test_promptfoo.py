"""icai's promptfoo export is accepted by promptfoo itself: it validates and its llm-rubric runs in an eval."""

from __future__ import annotations

from pathlib import Path

import pytest
from interop_env import PROMPTFOO, export, grader_prompts, needs, run_promptfoo_eval

from icai.export import rubric
from icai.types import Constitution

pytestmark = pytest.mark.interop
_tool_installed = needs(PROMPTFOO, "promptfoo")

# what a user adds around the exported defaultTest: prompts, a provider (echo: no model) and tests
EVAL_CONFIG = """
prompts:
  - "Answer the question: {{question}}"
providers:
  - echo
tests:
  - vars:
      question: What colour is the sky?
  - vars:
      question: Describe a cat.
"""


def test_promptfoo_runs_the_exported_rubric(icai_run: Path, tmp_path: Path) -> None:
    exported = export(icai_run, "promptfoo", "promptfoo.yaml").read_text(encoding="utf-8")
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(exported + EVAL_CONFIG, encoding="utf-8")
    output = run_promptfoo_eval(config, work_dir=tmp_path)
    results = output["results"]["results"]
    assert output["results"]["stats"]["successes"] == 2 and len(results) == 2
    for result in results:
        (component,) = result["gradingResult"]["componentResults"]
        assert component["assertion"]["type"] == "llm-rubric" and component["pass"]
    prompts = grader_prompts(tmp_path)
    assert len(prompts) == 2
    expected = rubric(Constitution.load(icai_run / "constitution.json"))
    assert all(line in prompts[0] for line in expected.splitlines() if line)
