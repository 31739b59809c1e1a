"""The notebooks in notebooks/: committed with their outputs, and each one runs top to bottom from a folder
outside the checkout (notebooks/execute.py runs them the way these tests do)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

from execute import NAMES, execute  # noqa: E402

MAX_BYTES = 250_000
"""A committed notebook's size: outputs are for reading on GitHub, not data dumps."""
MACHINE_PATH = re.compile(r"/tmp/|/work/|/home/|/root/|/Users/|/private/var/|/var/folders/|site-packages|(?<![A-Za-z])[A-Za-z]:\\[A-Za-z]")
"""An absolute path of the machine that executed the notebook, in any of its outputs."""


def _run(name: str, tmp_path: Path) -> tuple[Any, Path]:
    """Execute a copy of the notebook in a folder outside the checkout; the notebook and its run directories."""
    workdir = tmp_path / "elsewhere"
    start = time.perf_counter()
    nb = execute(NOTEBOOKS / name, workdir)
    print(f"{name}: {time.perf_counter() - start:.0f} s")
    return nb, workdir / "runs"


def _committed(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


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


def _has_image(nb: Any) -> bool:
    return any(
        o["output_type"] == "display_data" and "image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])
    )


# What each notebook must show; checked on a fresh execution and on the outputs committed with it.


def _shows_quickstart(nb: Any) -> None:
    assert "rank" in _text(_tagged(nb, "constitution-local"))
    fake = _text(_tagged(nb, "constitution-fake"))
    assert "Empty DataFrame" not in fake and "mentions" in fake
    assert "{'cat > dog': True, 'blue > green': True, 'lemon > raspberry': True}" in _text(_tagged(nb, "recovered"))


def _shows_real_dataset(nb: Any) -> None:
    scores = _text(_tagged(nb, "scores"))
    for name in ("constitution", "default"):
        assert name in scores
    assert re.search(r"^report: runs/real-llmbar-natural/report\.html \(\d+ KiB\)$", _text(_tagged(nb, "report")), re.M)
    assert _has_image(nb)


def _shows_use_a_constitution(nb: Any) -> None:
    assert "mentions" in _text(_tagged(nb, "constitution"))
    assert "with constitution" in _text(_tagged(nb, "judgements"))
    assert "You are judging which of two responses" in _text(_tagged(nb, "judge-prompt"))
    predictions = _text(_tagged(nb, "annotate-unlabelled"))
    assert "new-1" in predictions and "confidence" in predictions and "vote_1" in predictions
    own = _text(_tagged(nb, "own-principles"))
    assert "mentions 'raspberry'" in own and "is shorter" in own and "verdict" in own


def _shows_compare(nb: Any) -> None:
    groups = _text(_tagged(nb, "llmbar-groups"))
    assert "Strength by subset" in groups and "GPTOut" in groups and "Natural" in groups
    assert "natural (100 pairs) vs adversarial (319 pairs)" in _text(_tagged(nb, "llmbar-compare"))
    model = _text(_tagged(nb, "arena-model"))
    assert "which response is alpha's" in model and "certainly" in model
    assert "Strength by timestamp" in _text(_tagged(nb, "arena-drift"))


SHOWS: dict[str, Callable[[Any], None]] = {
    "01_quickstart.ipynb": _shows_quickstart,
    "02_real_dataset.ipynb": _shows_real_dataset,
    "03_use_a_constitution.ipynb": _shows_use_a_constitution,
    "04_compare.ipynb": _shows_compare,
}


def test_every_notebook_is_checked() -> None:
    assert sorted(SHOWS) == sorted(NAMES) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_with_its_outputs(name: str) -> None:
    """Executed top to bottom in one kernel, without an error, no machine's paths, small; and its outputs show
    what the fresh execution below must show."""
    assert (NOTEBOOKS / name).stat().st_size < MAX_BYTES
    nb = _committed(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    assert 'os.environ["HF_HUB_OFFLINE"] = "1"' in code[0].source
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: run `python notebooks/execute.py {name}` (counts {counts})"
    assert not _errors(nb)
    for cell in code:
        for output in cell.outputs:
            texts = [output.get("text", ""), *(v for k, v in output.get("data", {}).items() if k.startswith("text/"))]
            for text in texts:
                assert not MACHINE_PATH.search(text), f"{name}: a machine path in the output of {cell.source[:60]!r}"
        assert "execution" not in cell.metadata, f"{name}: cell timing recorded; run notebooks/execute.py"
    try:
        SHOWS[name](nb)
    except AssertionError as e:
        pytest.fail(f"{name}: its committed outputs are out of date ({e}); run `python notebooks/execute.py {name}`")


def test_notebook_finds_no_checkout_around_it() -> None:
    """The notebooks read data only through icai.datasets: no path into the checkout, no search for it."""
    for name in NAMES:
        source = "\n".join(c.source for c in _committed(name).cells if c.cell_type == "code")
        assert "find_repo_root" not in source and "pyproject.toml" not in source and "ROOT" not in source, name
        assert "icai.datasets." in source, name


@pytest.mark.slow
def test_notebook_kernel_is_this_python(tmp_path: Path) -> None:
    """The python3 kernel must be the interpreter running the tests (the venv), not a global one."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, icai\nprint(sys.prefix)")]
    path = tmp_path / "kernel.ipynb"
    nbformat.write(nb, path)
    done = execute(path, tmp_path / "elsewhere")
    stdout = "".join(o["text"] for o in done.cells[0].outputs if o["output_type"] == "stream" and o["name"] == "stdout")
    assert stdout.strip() == sys.prefix


@pytest.mark.slow
def test_quickstart(tmp_path: Path) -> None:
    nb, runs = _run("01_quickstart.ipynb", tmp_path)
    assert not _errors(nb)
    _shows_quickstart(nb)
    for run in ("quickstart-smollm2", "quickstart-fake"):
        data = json.loads((runs / run / "constitution.json").read_text())
        assert data["schema"] == "icai.constitution/1"
    assert json.loads((runs / "quickstart-fake" / "constitution.json").read_text())["principles"]


@pytest.mark.slow
def test_real_dataset(tmp_path: Path) -> None:
    nb, runs = _run("02_real_dataset.ipynb", tmp_path)
    assert not _errors(nb)
    _shows_real_dataset(nb)
    report = runs / "real-llmbar-natural" / "report.html"
    assert report.is_file() and report.stat().st_size > 1000
    evaluation = json.loads((runs / "real-llmbar-natural" / "evaluation.json").read_text())
    assert {s["name"] for s in evaluation["scores"]} >= {"constitution", "default"}


@pytest.mark.slow
def test_use_a_constitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICAI_RUN_DIR", raising=False)
    nb, runs = _run("03_use_a_constitution.ipynb", tmp_path)
    assert not _errors(nb)
    _shows_use_a_constitution(nb)
    exports = runs / "exports"
    assert "llm-rubric" in (exports / "promptfooconfig.yaml").read_text()
    assert "model_graded_qa" in (exports / "constitution_scorer.py").read_text()
    pairs = json.loads((exports / "annotated_pairs.json").read_text())
    assert pairs["metadata"]["version"] == "2.0" and pairs["comparisons"]


def test_compare(tmp_path: Path) -> None:
    """notebooks/04_compare.ipynb (issue 18): fake annotator only, so it runs in seconds and in the fast suite."""
    nb, runs = _run("04_compare.ipynb", tmp_path)
    assert not _errors(nb)
    _shows_compare(nb)
    compared = json.loads((runs / "natural-vs-adversarial" / "compare.json").read_text())
    assert compared["schema"] == "icai.compare/1" and compared["a"] == "natural" and compared["rows"]
    assert (runs / "natural-vs-adversarial" / "compare.html").stat().st_size > 1000
    drift = json.loads((runs / "arena-human" / "groups.json").read_text())
    assert drift["ordered"] and len(drift["groups"]) == 4
    assert any("'example'" in line for line in drift["summary"])
    assert drift["top_differences"]
