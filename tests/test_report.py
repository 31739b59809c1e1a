"""The HTML report of a run directory, built from a hand-made fake run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from testdata import missing

from icai.report import load_run, render_report, write_report
from icai.types import Constitution, Principle, PrincipleStats

SCRIPT = "<script>alert(1)</script>"
PRINCIPLES = [
    ("p1", "Select the response that answers in a full sentence."),
    ("p2", "Select the response that gives a concrete example."),
    ("p3", "Select the response that is shorter."),
]
# principle -> vote on comparisons c1..c6
VOTES = {
    "p1": ["for", "for", "for", "against", "abstain", "for"],
    "p2": ["for", "against", "against", "for", "invalid", "abstain"],
    "p3": ["abstain", "abstain", "for", "against", "for", "for"],
}


def make_run(path: Path, *, evaluation: bool = True) -> Path:
    """A run directory with 3 principles, 2 rejected candidates, 6 comparisons and their votes."""
    path.mkdir(parents=True, exist_ok=True)
    stats = [
        PrincipleStats(
            "p1",
            4,
            1,
            1,
            0,
            0.8,
            5 / 6,
            kappa=0.6,
            strength=0.5,
            agreement_ci=(0.38, 0.96),
            p_value=0.01,
            q_value=0.02,
            swap_consistency=0.9,
            length_adjusted_p=0.03,
            length_confounded=False,
        ),
        PrincipleStats(
            "p2",
            2,
            2,
            1,
            1,
            0.5,
            0.8,
            kappa=0.0,
            strength=0.0,
            agreement_ci=(0.15, 0.85),
            p_value=0.5,
            q_value=0.6,
            swap_consistency=0.7,
            length_adjusted_p=0.4,
            length_confounded=True,
        ),
        PrincipleStats(
            "p3",
            3,
            1,
            2,
            0,
            0.75,
            4 / 6,
            kappa=0.4,
            strength=0.3,
            agreement_ci=(0.3, 0.95),
            p_value=0.0001,
            q_value=0.0003,
            swap_consistency=None,
            length_adjusted_p=None,
            length_confounded=None,
        ),
    ]
    constitution = Constitution(
        tuple(
            Principle(pid, text, source_ids=("c1",), cluster=i, cluster_size=2)
            for i, (pid, text) in enumerate(PRINCIPLES)
        ),
        tuple(stats),
        {
            "dataset_hash": "abc123hash",
            "model": "fake/model",
            "version": "0.1",
            "config": {"seed": 0},
            "usage": {"calls": 1234, "input_tokens": 56789, "output_tokens": 4321},
        },
    )
    constitution.save(path / "constitution.json")

    rows = []
    for rank, s in enumerate(stats, start=1):
        rows.append(
            {
                "id": s.principle_id,
                "text": PRINCIPLES[rank - 1][1],
                "cluster": rank - 1,
                "cluster_size": 2,
                "in_constitution": True,
                "rank": rank,
                "kappa": s.kappa,
                "relevance": s.relevance,
                "agreement": s.agreement,
                "agreement_ci_low": s.agreement_ci[0] if s.agreement_ci else None,
                "agreement_ci_high": s.agreement_ci[1] if s.agreement_ci else None,
                "q_value": s.q_value,
                "length_confounded": s.length_confounded,
            }
        )
    for pid, kappa, relevance in (("x1", -0.2, 0.3), ("x2", 0.1, 0.9)):
        rows.append(
            {
                "id": pid,
                "text": f"Select the response that is {pid}.",
                "cluster": 9,
                "cluster_size": 1,
                "in_constitution": False,
                "rank": None,
                "kappa": kappa,
                "relevance": relevance,
            }
        )
    pd.DataFrame(rows).to_csv(path / "principles.csv", index=False)

    comparisons = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(1, 7)],
            "prompt": [f"Question {i}?" for i in range(1, 7)],
            "text_a": [f"Answer A{i}. " + ("long " * 200 if i == 2 else "") for i in range(1, 7)],
            "text_b": [SCRIPT if i == 1 else f"Answer B{i}." for i in range(1, 7)],
            "preferred": ["a", "b", "a", "b", "a", "b"],
            "split": ["train"] * 4 + ["test"] * 2,
        }
    )
    comparisons.to_csv(path / "comparisons.csv", index=False)
    votes = [
        {"comparison_id": f"c{i}", "principle_id": pid, "value": value, "picks": "a,a", "raw": "{}"}
        for pid, values in VOTES.items()
        for i, value in enumerate(values, start=1)
    ]
    pd.DataFrame(votes).to_csv(path / "votes.csv", index=False)

    if evaluation:
        scores = [
            {"name": "constitution", "agreement": 0.78, "ci": [0.6, 0.9], "n": 60, "n_invalid": 1},
            {"name": "default", "agreement": 0.55, "ci": [0.42, 0.68], "n": 60, "n_invalid": 0},
            {"name": "random", "agreement": 0.5, "ci": [0.37, 0.63], "n": 60, "n_invalid": 0},
            {"name": "flipped", "agreement": 0.3, "ci": [0.19, 0.43], "n": 60, "n_invalid": 2},
        ]
        data = {
            "scores": scores,
            "differences": {"constitution": {"mean": 0.23, "ci": [0.08, 0.37]}},
            "curve": {"principle_ids": ["p1", "p2", "p3"], "agreement": [0.7, 0.74, 0.78]},
        }
        (path / "evaluation.json").write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def test_report_has_every_section(run_dir: Path) -> None:
    page = render_report(run_dir)
    assert '<table id="constitution">' in page
    for plot in ("plot-agreement", "plot-curve", "plot-scatter"):
        assert re.search(rf'<figure class="plot" id="{plot}">\s*<svg', page), plot
    assert '<table id="length-confounds">' in page
    assert '<section id="examples">' in page
    assert "abc123hash" in page and "fake/model" in page and "1,234" in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", page)  # no external assets
    assert "<link" not in page


def test_constitution_table_rows_in_rank_order_with_ci(run_dir: Path) -> None:
    page = render_report(run_dir)
    table = page.split('<table id="constitution">')[1].split("</table>")[0]
    positions = [table.index(text) for _, text in PRINCIPLES]
    assert positions == sorted(positions)
    assert '0.80 <span class="ci">[0.38, 0.96]</span>' in table
    assert '<span class="flag">confounded</span>' in table
    assert "3.0e-04" in table  # a small q-value in scientific notation


def test_scores_and_differences_show_their_ci(run_dir: Path) -> None:
    page = render_report(run_dir)
    assert '0.78 <span class="ci">[0.60, 0.90]</span>' in page
    assert '0.230 <span class="ci">[0.080, 0.370]</span>' in page


def test_report_escapes_response_text(run_dir: Path) -> None:
    page = render_report(run_dir)
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page


def test_examples_are_capped_and_truncated(run_dir: Path) -> None:
    page = render_report(run_dir)
    article = page.split('id="examples-1"')[1].split("</article>")[0]
    voted_for = article.split("Voted against")[0]
    assert voted_for.count('class="pair"') == 2  # p1 voted for 4 comparisons; 2 are shown
    assert "comparison c4" in article.split("Voted against")[1]
    assert "long " * 100 not in page
    assert "\u2026" in page


def test_report_renders_without_evaluation(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", evaluation=False)
    page = render_report(run)
    assert '<table id="constitution">' in page
    assert 'id="plot-agreement"' not in page and 'id="plot-curve"' not in page
    assert "evaluation.json is missing" in page
    assert 'id="plot-scatter"' in page


def test_report_says_which_files_are_missing(run_dir: Path) -> None:
    (run_dir / "votes.csv").unlink()
    (run_dir / "principles.csv").write_text("not,a\nreal", encoding="utf-8")
    page = render_report(run_dir)
    assert "votes.csv is missing" in page
    assert "principles.csv could not be read" in page
    assert '<section id="examples">' in page and 'class="pair"' not in page


def test_scatter_needs_kappa_and_relevance(run_dir: Path) -> None:
    pd.DataFrame({"id": ["p1"], "text": ["t"], "in_constitution": [True]}).to_csv(
        run_dir / "principles.csv", index=False
    )
    page = render_report(run_dir)
    assert 'id="plot-scatter"' not in page
    assert "No candidate has both kappa and relevance." in page


def test_report_without_constitution(run_dir: Path) -> None:
    (run_dir / "constitution.json").unlink()
    page = render_report(run_dir)
    assert "constitution.json is missing" in page
    assert load_run(run_dir).constitution is None


def test_write_report_writes_report_html(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    assert path.read_text(encoding="utf-8") == render_report(run_dir)
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def test_report_screenshot_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        missing("chromium not installed: apt-get install chromium")
    from matplotlib.image import imread

    url = write_report(run_dir).resolve().as_uri()
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    subprocess.run(
        [
            browser,
            *flags,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            url,
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    dom = subprocess.run(
        [browser, *flags, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout

    for plot in ("plot-agreement", "plot-curve", "plot-scatter"):
        assert re.search(rf'<figure class="plot" id="{plot}">\s*<(svg|img)\b', dom), plot
    assert '<table id="constitution">' in dom
    assert shot.exists() and shot.stat().st_size > 10_000
    pixels = imread(shot)
    assert pixels.std() > 0
