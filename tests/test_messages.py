"""Each wrong or unhelpful message of issue 25, run again through the real command line: the sentence and the exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fault_server import FaultServer

from icai.cli import main
from icai.errors import EXIT_BUDGET, EXIT_OK, EXIT_USAGE
from icai.surface import versus_sentence

FAKE = ["--model", "fake/keyword", "--embedder", "hash"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("icai:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_every_unknown_label_value_is_named_at_once(tmp_path, capsys):
    data = tmp_path / "votes.csv"
    data.write_text("prompt,a,b,label\nq,x,y,first\nq,x2,y2,second\nq,x3,y3,draw\nq,x4,y4,first\n")
    code, _, err = _run(["run", str(data), "--out", str(tmp_path / "r"), "--columns", "prompt=prompt,a=a,b=b,label=label", *FAKE], capsys)
    line = _one_error(err)
    assert code == EXIT_USAGE
    assert "'first' (row 1), 'second' (row 2), 'draw' (row 3)" in line
    assert "--label-map" in line and "first=a,second=b,draw=tie" in line
    assert not (tmp_path / "r").exists()


def test_other_column_names_point_at_columns(tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_text("question,answer_1,answer_2,verdict\nq,x,y,a\n")
    code, _, err = _run(["validate", str(data)], capsys)
    line = _one_error(err)
    assert code == EXIT_USAGE and "missing required column(s) 'text_a'" in line
    assert "--columns prompt=COLUMN,a=COLUMN,b=COLUMN,label=COLUMN" in line


def test_out_naming_an_existing_file_says_so(orthogonal_csv, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    code, _, err = _run(["run", str(orthogonal_csv), "--out", str(target), *FAKE], capsys)
    line = _one_error(err)
    assert code == EXIT_USAGE and f"{target} is a file" in line and "not writable" not in line
    assert target.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("mean", "ci", "words"),
    [
        (0.278, (-0.056, 0.667), "the interval includes 0"),
        (0.278, (0.05, 0.5), "explains 27.8 points more"),
        (-0.2, (-0.4, -0.01), "explains 20.0 points fewer"),
    ],
)
def test_surface_difference_is_claimed_only_when_its_interval_excludes_zero(mean, ci, words):
    sentence = versus_sentence(mean, ci)
    assert words in sentence
    assert ("points more" in sentence or "points fewer" in sentence) == (ci[0] > 0 or ci[1] < 0)


def test_printed_surface_line_agrees_with_its_interval(orthogonal_csv, tmp_path, capsys):
    code, out, _ = _run(["run", str(orthogonal_csv), "--out", str(tmp_path / "r"), "--test-size", "0.3", *FAKE], capsys)
    assert code == EXIT_OK
    match = re.search(r"constitution - surface: ([+-][\d.]+) \(([+-][\d.]+) to ([+-][\d.]+)\): (.*)", out)
    assert match, out
    lo, hi = float(match.group(2)), float(match.group(3))
    claims = "points more" in match.group(4) or "points fewer" in match.group(4)
    assert claims == (lo > 0 or hi < 0), match.group(0)


def test_a_principle_against_the_labels_is_called_so(orthogonal_csv, tmp_path, capsys):
    frame = pd.read_csv(orthogonal_csv)
    frame["preferred_text"] = frame["preferred_text"].map({"text_a": "text_b", "text_b": "text_a"})
    flipped = tmp_path / "flipped.csv"
    frame.to_csv(flipped, index=False)
    principles = tmp_path / "mine.txt"
    principles.write_text("Select the response that mentions 'cat' in its text.\n")
    code, out, _ = _run(["test", str(flipped), "--principles", str(principles), "--out", str(tmp_path / "t"), *FAKE], capsys)
    assert code == EXIT_OK
    line = next(line for line in out.splitlines() if "mentions 'cat'" in line)
    assert "agreement 0.00" in line and "[significant against the labels" in line


def test_evaluate_refuses_an_empty_constitution(orthogonal_csv, tmp_path, capsys):
    empty = tmp_path / "constitution.json"
    empty.write_text(json.dumps({"schema": "icai.constitution/1", "principles": []}))
    code, out, err = _run(["evaluate", str(orthogonal_csv), "--constitution", str(empty), *FAKE], capsys)
    line = _one_error(err)
    assert code == EXIT_USAGE and "has no principles, so there is nothing to evaluate" in line
    assert "0 principles" not in out


def test_evaluate_says_why_the_random_line_is_missing(orthogonal_csv, tmp_path, capsys):
    assert main(["run", str(orthogonal_csv), "--out", str(tmp_path / "r"), *FAKE]) == EXIT_OK
    data = json.loads((tmp_path / "r" / "constitution.json").read_text())
    del data["tested_principles"]  # as an older icai wrote it
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    capsys.readouterr()
    code, out, _ = _run(["evaluate", str(orthogonal_csv), "--constitution", str(old), *FAKE], capsys)
    assert code == EXIT_OK
    assert re.search(r"^  random: omitted: .*does not list its run's candidate principles", out, re.MULTILINE), out


def test_validate_json_on_a_missing_file_prints_json(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "icai", "validate", str(tmp_path / "nope.csv"), "--json"], capture_output=True, text=True
    )
    assert done.returncode == EXIT_USAGE
    data = json.loads(done.stdout)
    assert "file not found" in data["error"] and data["exit_code"] == EXIT_USAGE
    assert _one_error(done.stderr).startswith("icai: error: ")


def test_a_spent_budget_has_its_own_exit_code(orthogonal_csv, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "icai", "run", str(orthogonal_csv), "--out", str(tmp_path / "r"), *FAKE, "--max-calls", "3"],
        capture_output=True, text=True,
    )
    assert done.returncode == EXIT_BUDGET != EXIT_USAGE
    line = _one_error(done.stderr)
    assert line.startswith("icai: budget reached: ") and "rerun with a larger budget to resume" in line


def test_a_tiny_training_share_is_warned_before_any_call(orthogonal_csv, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "icai", "run", str(orthogonal_csv), "--out", str(tmp_path / "r"), "--test-size", "0.97", *FAKE],
        capture_output=True, text=True,
    )
    assert done.returncode == EXIT_OK
    lines = done.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if "--test-size 0.97" in line)
    assert "leaves 1 to learn from" in lines[warning] and "holds out 29 of 30 pairs" in lines[warning]
    first_call = next(i for i, line in enumerate(lines) if "calls" in line and i != warning)
    assert warning < first_call  # up front, before the first model call


def test_an_empty_constitution_still_writes_a_principles_table(tmp_path, caplog):
    from icai.report import load_run
    from icai.store import RunStore
    from icai.types import Constitution

    store = RunStore(tmp_path / "run")
    store.save_principle_table([], [], Constitution(()))
    header = (tmp_path / "run" / "principles.csv").read_text().splitlines()
    assert len(header) == 1 and header[0].startswith("id,text,cluster,")
    with caplog.at_level("WARNING"):
        run = load_run(tmp_path / "run")
    assert "principles.csv" not in run.problems and "cannot read" not in caplog.text


def test_an_empty_run_reports_without_warning(orthogonal_csv, tmp_path, capsys):
    principles = tmp_path / "mine.txt"
    principles.write_text("Select the response that is longer.\n")  # fake/keyword abstains on it: nothing selected
    out = tmp_path / "t"
    code, printed, err = _run(["test", str(orthogonal_csv), "--principles", str(principles), "--out", str(out), *FAKE], capsys)
    assert code == EXIT_OK and "The constitution is empty" in printed
    assert "cannot read" not in err
    assert pd.read_csv(out / "principles.csv").columns[0] == "id"


def test_a_self_hosted_server_is_not_priced_as_the_hosted_model(orthogonal_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FaultServer() as server:
        argv = ["run", str(orthogonal_csv), "--out", str(tmp_path / "r"), "--model", "openai/gpt-4o-mini",
                "--base-url", server.base_url, "--embedder", "hash", "--n-clusters", "3", "--bootstrap", "0"]
        code, out, _ = _run(argv, capsys)
    assert code == EXIT_OK
    last = [line for line in out.splitlines() if "model calls" in line][-1]
    assert "price unknown" in last and "$" not in last
    code, out, _ = _run([*argv, "--dry-run"], capsys)
    assert "No price is known for openai/gpt-4o-mini" in out


def test_a_dpo_jsonl_is_reported_as_dpo(tmp_path, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "yes", "rejected": "no"}\n{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    code, out, _ = _run(["validate", str(data)], capsys)
    assert code == EXIT_OK and "format dpo (jsonl)" in out


def test_progress_counts_the_five_stages_of_the_readme(orthogonal_csv, tmp_path, capsys, caplog):
    with caplog.at_level("INFO"):
        code, _, _ = _run(["run", str(orthogonal_csv), "--out", str(tmp_path / "r"), "--test-size", "0.3", *FAKE], capsys)
    assert code == EXIT_OK
    stages = re.findall(r"stage (\d)/(\d) (\w+)", caplog.text)
    assert stages and {total for _, total, _ in stages} == {"5"}
    assert {(n, name) for n, _, name in stages} == {("1", "propose"), ("3", "vote"), ("5", "evaluate")}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    described = re.findall(r"^(\d)\. \*\*(\w+)", readme, re.MULTILINE)  # "How it works", one item per stage
    assert described == [("1", "propose"), ("2", "cluster"), ("3", "vote"), ("4", "select"), ("5", "evaluate")]


def test_run_lock_is_removed_after_a_clean_finish(orthogonal_csv, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, _ = _run(["run", str(orthogonal_csv), "--out", str(out), *FAKE], capsys)
    assert code == EXIT_OK and (out / "constitution.json").exists()
    assert not (out / "run.lock").exists()
