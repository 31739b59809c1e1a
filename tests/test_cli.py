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
    assert lines[0] == "id,predicted,preferred" and len(lines) == 31
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
