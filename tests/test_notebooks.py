"""The notebooks in notebooks/: committed without outputs, and each one runs top to bottom."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_real_dataset.ipynb", "03_use_a_constitution.ipynb", "04_compare.ipynb"]


def _execute(nb: Any, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The kernel inherits this process's environment: the notebooks write their run directories there.
    monkeypatch.setenv("ICAI_NOTEBOOK_OUT", str(out_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return nb


def _run(name: str, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = time.perf_counter()
    _execute(nb, out_dir, monkeypatch)
    print(f"{name}: {time.perf_counter() - start:.0f} s")
    return nb


def _tagged(nb: Any, tag: str) -> Any:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell: Any) -> str:
    """Everything a cell printed or displayed as plain text."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _errors(nb: Any) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for cell in code:
        assert cell.outputs == [], f"{name}: cell {cell.get('id')} has outputs; clear them before committing"
        assert cell.execution_count is None, f"{name}: cell {cell.get('id')} has an execution count"
    assert 'os.environ["HF_HUB_OFFLINE"] = "1"' in code[0].source


@pytest.mark.slow
def test_notebook_kernel_is_this_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The python3 kernel must be the interpreter running the tests (the venv), not a global one."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, icai\nprint(sys.prefix)")]
    _execute(nb, tmp_path, monkeypatch)
    stdout = "".join(o["text"] for o in nb.cells[0].outputs if o["output_type"] == "stream" and o["name"] == "stdout")
    assert stdout.strip() == sys.prefix


@pytest.mark.slow
def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run("01_quickstart.ipynb", tmp_path, monkeypatch)
    assert not _errors(nb)
    assert "rank" in _text(_tagged(nb, "constitution-local"))
    fake = _text(_tagged(nb, "constitution-fake"))
    assert "Empty DataFrame" not in fake and "mentions" in fake
    assert "{'cat > dog': True, 'blue > green': True, 'lemon > raspberry': True}" in _text(_tagged(nb, "recovered"))
    for run in ("quickstart-smollm2", "quickstart-fake"):
        data = json.loads((tmp_path / run / "constitution.json").read_text())
        assert data["schema"] == "icai.constitution/1"
    assert json.loads((tmp_path / "quickstart-fake" / "constitution.json").read_text())["principles"]


@pytest.mark.slow
def test_real_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run("02_real_dataset.ipynb", tmp_path, monkeypatch)
    assert not _errors(nb)
    scores = _text(_tagged(nb, "scores"))
    for name in ("constitution", "default"):
        assert name in scores
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("real-")]
    report = run_dir / "report.html"
    assert report.is_file() and report.stat().st_size > 1000
    assert str(report) in _text(_tagged(nb, "report"))
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert {s["name"] for s in evaluation["scores"]} >= {"constitution", "default"}
    assert any(
        o["output_type"] == "display_data" and "image/png" in o.get("data", {})
        for c in nb.cells
        for o in c.get("outputs", [])
    )


@pytest.mark.slow
def test_use_a_constitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICAI_RUN_DIR", raising=False)
    nb = _run("03_use_a_constitution.ipynb", tmp_path, monkeypatch)
    assert not _errors(nb)
    assert "mentions" in _text(_tagged(nb, "constitution"))
    assert "with constitution" in _text(_tagged(nb, "judgements"))
    assert "You are judging which of two responses" in _text(_tagged(nb, "judge-prompt"))
    exports = tmp_path / "exports"
    assert "llm-rubric" in (exports / "promptfooconfig.yaml").read_text()
    assert "model_graded_qa" in (exports / "constitution_scorer.py").read_text()
    pairs = json.loads((exports / "annotated_pairs.json").read_text())
    assert pairs["metadata"]["version"] == "2.0" and pairs["comparisons"]
    predictions = _text(_tagged(nb, "annotate-unlabelled"))
    assert "new-1" in predictions and "confidence" in predictions and "vote_1" in predictions
    own = _text(_tagged(nb, "own-principles"))
    assert "mentions 'raspberry'" in own and "is shorter" in own and "verdict" in own


def test_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """notebooks/04_compare.ipynb (issue 18): fake annotator only, so it runs in seconds and in the fast suite."""
    nb = _run("04_compare.ipynb", tmp_path, monkeypatch)
    assert not _errors(nb)
    groups = _text(_tagged(nb, "llmbar-groups"))
    assert "Strength by subset" in groups and "GPTOut" in groups and "Natural" in groups
    compared = json.loads((tmp_path / "natural-vs-adversarial" / "compare.json").read_text())
    assert compared["schema"] == "icai.compare/1" and compared["a"] == "natural" and compared["rows"]
    assert (tmp_path / "natural-vs-adversarial" / "compare.html").stat().st_size > 1000
    assert "natural (100 pairs) vs adversarial (319 pairs)" in _text(_tagged(nb, "llmbar-compare"))
    model = _text(_tagged(nb, "arena-model"))
    assert "which response is alpha's" in model and "certainly" in model
    drift = json.loads((tmp_path / "arena-human" / "groups.json").read_text())
    assert drift["ordered"] and len(drift["groups"]) == 4
    assert any("'example'" in line for line in drift["summary"])
    assert drift["top_differences"]
