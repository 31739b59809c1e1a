import json
import subprocess
import sys

import pytest

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
    # the keyword fake's own rules; the style principles are tested in test_style.py (on this set "is shorter"
    # takes the cat rule's place)
    code = main(
        ["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3",
         "--no-style-principles"]
    )  # fmt: skip
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
    import pandas as pd

    frame = pd.read_csv(preds)
    assert list(frame.columns[:7]) == ["id", "prompt", "text_a", "text_b", "predicted", "confidence", "confidence_kind"]
    assert frame.columns[-1] == "preferred" and "vote_1" in frame.columns and len(frame) == 30
    from icai import load_comparisons

    source = load_comparisons(orthogonal_csv)
    assert list(frame["text_a"]) == [c.text_a for c in source]  # the texts it predicted on, beside each prediction
    assert list(frame["prompt"].fillna("")) == [c.prompt for c in source]
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
    argv = ["run", str(orthogonal_csv), "--out", str(strong), "--model", "fake/keyword", "--embedder", "hash"]
    assert main([*argv, "--no-style-principles"]) == 0
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


# --- issue 25: evaluate --out/--json, annotate's columns and --overwrite, report refusals ----------------


def _fake_run(orthogonal_csv, out) -> None:
    assert main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]) == 0


def test_evaluate_writes_its_results_and_prints_json(orthogonal_csv, tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(orthogonal_csv, run)
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = ["evaluate", str(orthogonal_csv), "--constitution", str(run), "--model", "fake/keyword", "--embedder", "hash",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # stdout holds only the JSON; the training-data warning went to stderr
    assert "not a held-out estimate" in captured.err and printed["warnings"]
    names = [s["name"] for s in printed["scores"]]
    assert names[:2] == ["constitution", "default"] and printed["n_pairs"] == 30
    assert json.loads((out / "evaluation.json").read_text())["scores"] == printed["scores"]
    import pandas as pd

    pairs = pd.read_csv(out / "pairs.csv")
    assert list(pairs.columns[:3]) == ["id", "preferred", "constitution"] and len(pairs) == 30
    agreement = (pairs["constitution"] == pairs["preferred"]).mean() + 0.5 * (pairs["constitution"] == "neither").mean()
    assert agreement == pytest.approx(printed["scores"][0]["agreement"])
    # a second evaluate into the same folder is refused before any call, unless --overwrite
    assert main(argv) == 2
    assert "already holds evaluation.json, pairs.csv; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_annotate_keeps_chosen_columns_and_refuses_to_overwrite(orthogonal_csv, tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(orthogonal_csv, run)
    preds = tmp_path / "preds.csv"
    argv = ["annotate", str(orthogonal_csv), "--constitution", str(run), "--model", "fake/keyword", "--embedder", "hash",
            "--out", str(preds)]
    assert main([*argv, "--keep-columns", "none"]) == 0
    assert preds.read_text().startswith("id,predicted,")
    capsys.readouterr()
    assert main(argv) == 2
    assert f"--out {preds} exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--keep-columns", "text_b,nope"]) == 2
    assert "--keep-columns names 'nope', not a field of the input" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--keep-columns", "text_b", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_pairs"] == 30 and printed["agreement"]["n"] == 30
    assert preds.read_text().startswith("id,text_b,predicted,")


def test_report_refuses_a_folder_without_a_run(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "pairs.csv").write_text("x\n")
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "holds no finished icai run" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["pairs.csv"]  # nothing written


def test_report_takes_a_constitution_path(orthogonal_csv, tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(orthogonal_csv, run)
    (run / "report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(run / "constitution.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"report": str(run / "report.html")}
    assert (run / "report.html").exists()


def test_report_refuses_or_waits_for_a_run_in_progress(orthogonal_csv, tmp_path, capsys):
    from icai.store import RunStore

    run = tmp_path / "run"
    _fake_run(orthogonal_csv, run)
    (run / "report.html").unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242'); print('locked', flush=True); time.sleep(float(sys.argv[2]))",
         str(run / "run.lock"), "3"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert RunStore.existing(run).holder() == "4242"
        assert main(["report", str(run)]) == 2
        err = capsys.readouterr().err
        assert "is a run in progress (pid 4242)" in err and "--wait" in err
        assert not (run / "report.html").exists()
        assert main(["report", str(run), "--wait", "30"]) == 0  # returns once the holder lets go
        assert (run / "report.html").exists()
    finally:
        holder.kill()
        holder.wait()


def test_run_and_its_dry_run_print_json_only(orthogonal_csv, tmp_path, capsys):
    argv = ["run", str(orthogonal_csv), "--out", str(tmp_path / "run"), "--model", "fake/keyword", "--embedder", "hash",
            "--test-size", "0.3", "--json"]
    assert main([*argv, "--dry-run"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["dry_run"] and estimate["calls"] == sum(s["calls"] for s in estimate["stages"])
    assert not (tmp_path / "run").exists()
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    assert printed["run_dir"] == str(tmp_path / "run")
    assert printed["constitution"]["principles"] and printed["evaluation"]["scores"]
    assert printed["usage"]["calls"] > 0
