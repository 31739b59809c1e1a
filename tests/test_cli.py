import json
import subprocess
import sys

from icai import __version__
from icai.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_run_with_fake_recovers_rules_and_writes_run_dir(orthogonal_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3"])
    printed = capsys.readouterr().out
    assert code == 0
    top5 = printed.split("Held-out")[0].lower()
    assert "'cat'" in top5 and "'blue'" in top5 and "'lemon'" in top5
    assert "constitution" in printed and "default" in printed
    data = json.loads((out / "constitution.json").read_text())
    assert data["schema"] == "icai.constitution/1"
    assert data["config"]["test_size"] == 0.3
    assert (out / "report.html").exists() and (out / "run.log").stat().st_size > 0


def test_annotate_export_and_report(orthogonal_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]) == 0
    preds = tmp_path / "preds.csv"
    code = main(["annotate", str(orthogonal_csv), "--constitution", str(out / "constitution.json"), "--model", "fake/keyword", "--out", str(preds)])
    assert code == 0
    lines = preds.read_text().splitlines()
    assert lines[0].startswith("id,predicted,confidence,confidence_kind,vote_1,") and lines[0].endswith(",preferred")
    assert len(lines) == 31
    capsys.readouterr()
    assert main(["export", str(out / "constitution.json"), "--format", "prompt"]) == 0
    assert "Select the response that" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert main(["evaluate", str(orthogonal_csv), "--constitution", str(out / "constitution.json"), "--model", "fake/keyword"]) == 0
    assert "default" in capsys.readouterr().out


def test_validate_reports_counts(orthogonal_csv, capsys):
    assert main(["validate", str(orthogonal_csv)]) == 0
    assert "30 usable comparisons" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text_a,text_b\nx,y\n")
    proc = subprocess.run([sys.executable, "-m", "icai.cli", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "preferred" in proc.stderr


def test_run_states_significance_and_stability(orthogonal_csv, tmp_path, capsys):
    """Strong data: the significant principles, one per hidden rule; weak data: the "no principle" sentence."""
    strong = tmp_path / "strong"
    assert main(["run", str(orthogonal_csv), "--out", str(strong), "--model", "fake/keyword", "--embedder", "hash"]) == 0
    printed = capsys.readouterr().out
    assert "beats chance" not in printed
    lines = [line for line in printed.splitlines() if line[:4].strip().rstrip(".").isdigit() and line[3] == " "]
    assert len(lines) == 3 and all("[significant" in line for line in lines)
    assert "Stability: over 200 bootstrap resamples" in printed
    data = json.loads((strong / "constitution.json").read_text())
    assert [p["stats"]["verdict"] for p in data["principles"]] == ["significant"] * 3
    assert data["selection"]["method"] == "greedy" and data["selection"]["merges"]
    assert 0.0 < data["stability"]["expected_overlap"] <= 1.0

    import pandas as pd

    few = tmp_path / "few.csv"
    pd.read_csv(orthogonal_csv).head(5).to_csv(few, index=False)
    weak = tmp_path / "weak"
    assert main(["run", str(few), "--out", str(weak), "--model", "fake/keyword", "--embedder", "hash"]) == 0
    printed = capsys.readouterr().out
    assert "No principle beats chance on these 5 pairs" in printed and "treat this list as hypotheses" in printed
    notes = json.loads((weak / "constitution.json").read_text())["notes"]
    assert any("beats chance" in n for n in notes)
    html = (weak / "report.html").read_text()
    assert 'id="notes"' in html and "beats chance" in html


def test_stability_makes_no_model_calls(orthogonal_csv, tmp_path):
    calls = []
    for n in (0, 200):
        out = tmp_path / f"b{n}"
        args = ["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]
        assert main([*args, "--test-size", "0.3", "--bootstrap", str(n)]) == 0
        data = json.loads((out / "constitution.json").read_text())
        calls.append(data["usage"]["calls"])
        evaluation = json.loads((out / "evaluation.json").read_text())
    assert calls[0] == calls[1]
    assert evaluation["stability"]["n_resamples"] == 200 and evaluation["stability"]["frequency"]
