"""Everyday use (issue 17): your own principles (`--principles`, `icai test`), `icai annotate` on unlabelled pairs,
an `icai evaluate` that says what it measured, and no tracebacks (each former one is tested here)."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from icai.cli import EXIT_CLOSED_PIPE, main
from icai.errors import EXIT_ERROR, DataError
from icai.evaluate import evaluate, predict, score
from icai.io import load_comparisons, load_comparisons_with_report
from icai.llm import LLM
from icai.llm.base import Capabilities, Completion, Request
from icai.llm.fake import fake_provider
from icai.types import Comparison, Constitution, Principle
from icai.user_principles import read_principles_file

WASHINGTON = "Select the response that mentions 'washington' in its text."
SHORTER = "Select the response that is shorter."
BANANA = "Select the response that mentions 'banana' in its text."
FAKE = ["--model", "fake/keyword", "--embedder", "hash"]


@pytest.fixture
def aligned_csv() -> Path:
    from testdata import data_file

    return data_file("synthetic_data_aligned_vqvtb.csv")


@pytest.fixture
def principles_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.txt"
    path.write_text(f"# my rules\n{WASHINGTON}\n\n{SHORTER}\n{BANANA}\n{WASHINGTON.upper()}\n", encoding="utf-8")
    return path


def _json(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text(encoding="utf-8"))


# --- principles files -----------------------------------------------------------------------


def test_a_principles_file_is_lines_or_a_json_list(principles_file: Path, tmp_path: Path) -> None:
    # comments and blank lines are skipped; a repeat (ignoring case) is kept once
    assert read_principles_file(principles_file) == [WASHINGTON, SHORTER, BANANA]
    listed = tmp_path / "mine.json"
    listed.write_text(json.dumps([SHORTER, {"text": BANANA}]), encoding="utf-8")
    assert read_principles_file(listed) == [SHORTER, BANANA]


@pytest.mark.parametrize(
    ("content", "words"),
    [("# only a comment\n\n", "no principles found"), ("[1, 2]", "item 1 of the JSON list"), ("[oops", "not valid JSON")],
)
def test_a_bad_principles_file_is_one_sentence(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "p.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(words)):
        read_principles_file(path)
    with pytest.raises(DataError, match="principles file not found"):
        read_principles_file(tmp_path / "missing.txt")


# --- icai run --principles ------------------------------------------------------------------


def test_run_with_principles_keeps_them_through_clustering_and_shows_them_everywhere(
    aligned_csv: Path, principles_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # two clusters: without the bypass, three more principles could never all survive clustering
    # (the style principles, which also bypass clustering, are left out: tests/test_style.py)
    argv = ["run", str(aligned_csv), "--out", str(out), *FAKE, "--n-clusters", "2", "--principles", str(principles_file),
            "--no-style-principles"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Your principles" in printed and BANANA in printed.split("Your principles")[1]

    tested = _json(out / "clusters.json")["representatives"]
    assert len(tested) == 2 + 3
    assert [p["text"] for p in tested if p["origin"] == "user"] == [WASHINGTON, SHORTER, BANANA]
    votes = pd.read_csv(out / "votes.csv", dtype=str)
    user_ids = {p["id"] for p in tested if p["origin"] == "user"}
    assert user_ids <= set(votes["principle_id"])  # voted like the others

    constitution = _json(out / "constitution.json")
    rows = {r["text"]: r for r in constitution["user_principles"]}
    assert list(rows) == [WASHINGTON, SHORTER, BANANA]
    assert rows[WASHINGTON]["stats"]["n_for"] > 0 and rows[WASHINGTON]["stats"]["verdict"] in ("significant", "exploratory")
    assert rows[BANANA]["in_constitution"] is False and rows[BANANA]["stats"]["n_for"] == 0  # shown though not selected
    assert constitution["config"]["principles"] == [WASHINGTON, SHORTER, BANANA]

    table = pd.read_csv(out / "principles.csv")
    assert set(table.loc[table["origin"] == "user", "text"]) == {WASHINGTON, SHORTER, BANANA}
    report = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="user-principles"' in report and "mentions &#x27;banana&#x27;" in report

    # a rerun of the same command resumes: the same config, nothing asked twice
    assert main(argv) == 0
    assert re.search(r"(\d+) model calls \(\1 from cache\)", capsys.readouterr().out)


# --- icai test ------------------------------------------------------------------------------


def test_icai_test_votes_only_the_given_principles_in_a_run_directory(
    aligned_csv: Path, principles_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tested"
    argv = ["test", str(aligned_csv), "--principles", str(principles_file), "--out", str(out), *FAKE]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Your 3 principles, tested on 30 pairs" in printed
    listing = printed.split("Your 3 principles")[1].split("Constitution")[0]
    assert all(text in listing for text in (WASHINGTON, SHORTER, BANANA))
    assert re.search(r"agreement \d\.\d\d \(\d\.\d\d-\d\.\d\d\)", listing) and ("significant" in listing or "exploratory" in listing)

    assert not (out / "proposals.json").exists()  # nothing proposed
    assert {p["origin"] for p in _json(out / "clusters.json")["candidates"]} == {"user"}
    constitution = _json(out / "constitution.json")
    assert constitution["config"]["principles_only"] is True
    assert [r["text"] for r in constitution["user_principles"]] == [WASHINGTON, SHORTER, BANANA]
    assert all(r["stats"]["agreement_ci"] is None or len(r["stats"]["agreement_ci"]) == 2 for r in constitution["user_principles"])
    assert 'id="user-principles"' in (out / "report.html").read_text(encoding="utf-8")

    # exports: every user principle is an annotator of the annotated-pairs file, selected or not
    assert main(["export", str(out), "--format", "annotated-pairs", "--out", str(tmp_path / "ap.json")]) == 0
    annotators = _json(tmp_path / "ap.json")["annotators"]
    assert {a.get("description") for a in annotators.values()} >= {WASHINGTON, SHORTER, BANANA}
    capsys.readouterr()
    assert main(["export", str(out), "--format", "promptfoo"]) == 0
    comments = capsys.readouterr().out.split("defaultTest")[0]
    assert "Your principles tested but not selected" in comments and BANANA in comments

    # the run-directory conventions: a rerun resumes from the cache, another dataset is refused without --overwrite
    capsys.readouterr()
    assert main(argv) == 0
    assert re.search(r"(\d+) model calls \(\1 from cache\)", capsys.readouterr().out)
    other = tmp_path / "other.csv"
    pd.read_csv(aligned_csv).head(12).to_csv(other, index=False)
    assert main(["test", str(other), "--principles", str(principles_file), "--out", str(out), *FAKE]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_icai_test_asks_no_proposal_and_its_estimate_has_no_propose_stage(
    aligned_csv: Path, principles_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from icai.config import RunConfig
    from icai.cost import estimate_run
    from icai.embed import HashingEmbedder
    from icai.pipeline import run

    provider = fake_provider("keyword")
    comparisons = load_comparisons(aligned_csv)
    config = RunConfig(principles=(WASHINGTON, SHORTER), principles_only=True, bootstrap=0)
    result = run(comparisons, llm=LLM(provider, progress=False), embedder=HashingEmbedder(), config=config)
    assert not any("[PREFERRED]" in r.prompt_text for r in provider.requests)
    assert [p.text for p in result.tested] == [WASHINGTON, SHORTER]
    assert [s.stage for s in estimate_run(comparisons, config).stages] == ["vote"]
    assert main(["test", str(aligned_csv), "--principles", str(principles_file), "--out", str(tmp_path / "d"), *FAKE, "--dry-run"]) == 0
    assert "propose" not in capsys.readouterr().out and not (tmp_path / "d").exists()


# --- annotate without labels ----------------------------------------------------------------


def test_loading_unlabelled_pairs_is_allowed_only_when_asked(aligned_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(aligned_csv).head(6)
    no_column = tmp_path / "new.csv"
    frame.drop(columns=["preferred_text"]).to_csv(no_column, index=False)
    with pytest.raises(DataError, match="missing required column"):
        load_comparisons(no_column)
    pairs, report = load_comparisons_with_report(no_column, allow_unlabelled=True)
    assert len(pairs) == 6 and len(report.unlabelled_ids) == 6
    some = tmp_path / "some.csv"
    frame.assign(preferred_text=["text_a", "", "tie", "text_b", "", "text_a"]).to_csv(some, index=False)
    pairs, report = load_comparisons_with_report(some, allow_unlabelled=True)
    assert len(pairs) == 6 and set(report.unlabelled_ids) == {pairs[i].id for i in (1, 2, 4)}
    assert len(load_comparisons(some)) == 3  # the default still drops them


def test_annotate_predicts_unlabelled_pairs_and_scores_labelled_ones(
    aligned_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(aligned_csv), "--out", str(out), *FAKE]) == 0
    k = len(_json(out / "constitution.json")["principles"])
    frame = pd.read_csv(aligned_csv).head(10)
    new = tmp_path / "new.csv"
    frame.drop(columns=["preferred_text"]).to_csv(new, index=False)
    capsys.readouterr()
    preds = tmp_path / "preds.csv"
    assert main(["annotate", str(new), "--constitution", str(out), "--model", "fake/keyword", "--out", str(preds)]) == 0
    printed = capsys.readouterr().out
    assert "No pair has a label" in printed and "Agreement" not in printed
    table = pd.read_csv(preds, dtype=str, keep_default_na=False)
    assert list(table.columns) == [
        "id", "prompt", "text_a", "text_b", "predicted", "confidence", "confidence_kind",
        *(f"vote_{i}" for i in range(1, k + 1)), "preferred",
    ]
    assert set(table["predicted"]) <= {"a", "b", "neither", "invalid"} and set(table["preferred"]) == {""}
    assert set(table["confidence_kind"]) == {"vote_share"}
    assert {float(c) for c in table["confidence"]} <= {0.5, 1.0}
    picks = {pick for i in range(1, k + 1) for pick in table[f"vote_{i}"]}
    assert picks <= {"a", "b", "neither", "invalid"} and picks & {"a", "b"}  # principles took sides

    half = tmp_path / "half.csv"
    frame.assign(preferred_text=["text_a" if p == "text_a" else "text_b" for p in frame["preferred_text"]][:4] + [""] * 6).to_csv(
        half, index=False
    )
    argv = ["annotate", str(half), "--constitution", str(out / "constitution.json"), "--model", "fake/keyword", "--out", str(preds)]
    assert main([*argv, "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"Agreement with the labels of 4 labelled pairs: \d\.\d{3} \(95% Wilson CI \d\.\d{3}-\d\.\d{3}", printed)
    assert "6 pairs without a label are predicted only" in printed


class CatLogprobs:
    """A log-prob judge that favours the slot whose response says "cat" by 2 nats, plus 1 nat for slot A."""

    model = "fake/cat-logprobs"
    capabilities = Capabilities(choice_logprobs=True)

    def complete(self, request: Request) -> Completion:
        prompt = request.prompt_text
        a = re.findall(r"\[RESPONSE A\]\n(.*?)\n\[/RESPONSE A\]", prompt, re.DOTALL)[-1]
        b = re.findall(r"\[RESPONSE B\]\n(.*?)\n\[/RESPONSE B\]", prompt, re.DOTALL)[-1]
        margin = 1.0 + 2.0 * (("cat" in a) - ("cat" in b))
        logprobs = {"A": -math.log1p(math.exp(-margin)), "B": -math.log1p(math.exp(margin))}
        return Completion("A" if margin > 0 else "B", input_tokens=1, output_tokens=1, choice_logprobs=logprobs)


def test_predictions_of_a_logprob_judge_carry_its_margin() -> None:
    pairs = [
        Comparison("c1", "a cat sat", "a dog sat", "a", prompt="Write."),
        Comparison("c2", "a dog sat", "a cat sat", "a", prompt="Write."),
        Comparison("c3", "a dog sat", "a dog ran", "a", prompt="Write."),
    ]
    rule = Principle.from_text("Select the response that mentions a cat.")
    predictions = predict(pairs, LLM(CatLogprobs(), progress=False), principles=[rule], mode="logprob")  # type: ignore[arg-type]
    assert [p.predicted for p in predictions] == ["a", "b", "neither"]
    assert {p.confidence_kind for p in predictions} == {"logprob_margin"}
    # the slot bias (1 nat) cancels over both orders: |margin| is the 2-nat signal, 0 without one
    assert [p.confidence for p in predictions] == pytest.approx([2.0, 2.0, 0.0])
    assert [p.principle_picks for p in predictions] == [("a",), ("b",), ("neither",)]


# --- evaluate -------------------------------------------------------------------------------


def test_small_n_intervals_are_wilson_not_a_collapsed_bootstrap() -> None:
    from icai.evaluate import Judgement

    pairs = [Comparison(f"c{i}", "x", "y", "a") for i in range(9)]
    s = score("constitution", [Judgement(c.id, "a", ("a", "a")) for c in pairs], pairs)
    assert s.agreement == 1.0 and s.ci_method == "wilson"
    assert s.ci[0] < 0.75 and s.ci[1] == 1.0  # 9 of 9: Wilson's lower bound is about 0.70, not 1.00


def test_evaluate_warns_on_training_data_and_explains_each_baseline(
    aligned_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(aligned_csv), "--out", str(out), *FAKE, "--test-size", "0.3"]) == 0
    n_tested = len(_json(out / "constitution.json")["tested_principles"])
    assert 'id="score-explanations"' in (out / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    evaluate_argv = ["evaluate", str(aligned_csv), "--constitution", str(out / "constitution.json"), "--model", "fake/keyword"]
    assert main(evaluate_argv) == 0
    printed = capsys.readouterr().out
    assert "training pairs included" in printed and "not a held-out estimate" in printed
    assert f"from the run's {n_tested} candidate principles" in printed
    assert re.search(r"^  default: the LLM judge with no principles", printed, re.MULTILINE)
    assert re.search(r"^  surface: no model", printed, re.MULTILINE)
    assert re.search(r"^constitution +\d\.\d{3} +\d\.\d{3}-\d\.\d{3} +(wilson|bootstrap) +30$", printed, re.MULTILINE)

    # a few of the run's training pairs inside another file: counted from the comparisons.csv beside it
    table = pd.read_csv(out / "comparisons.csv", dtype=str, keep_default_na=False)
    mixed = tmp_path / "mixed.csv"
    table.head(8)[["id", "prompt", "text_a", "text_b", "preferred"]].rename(columns={"preferred": "preferred_text"}).to_csv(
        mixed, index=False
    )
    n_train = int((table.head(8)["split"] == "train").sum())
    assert main(["evaluate", str(mixed), "--constitution", str(out), "--model", "fake/keyword"]) == 0
    assert f"Warning: {n_train} of 8 pairs are training pairs of this run" in capsys.readouterr().out


def test_without_the_runs_candidates_the_random_baseline_is_omitted_with_a_reason(
    aligned_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(aligned_csv), "--out", str(out), *FAKE]) == 0
    data = _json(out / "constitution.json")
    del data["tested_principles"]
    copied = tmp_path / "elsewhere" / "constitution.json"
    copied.parent.mkdir()
    copied.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(aligned_csv), "--constitution", str(copied), "--model", "fake/keyword"]) == 0
    printed = capsys.readouterr().out
    assert not re.search(r"^  random +\d", printed, re.MULTILINE)
    assert "random: omitted: " in printed and "does not list its run's candidate principles" in printed


def test_the_random_baseline_is_not_the_constitution_reordered() -> None:
    pairs = [Comparison(f"c{i}", f"cat {i}", f"dog {i}", "a") for i in range(4)]
    provider = fake_provider("keyword")
    constitution = ["Select the response that mentions 'cat' in its text."]
    candidates = [f"Select the response that mentions 'w{i}' in its text." for i in range(5)]
    result = evaluate(pairs, LLM(provider, progress=False), constitution_texts=constitution, candidate_texts=candidates)
    random_prompts = [r.prompt_text for r in provider.requests if "'w" in r.prompt_text]
    assert random_prompts and not any("'cat'" in p for p in random_prompts)
    assert "5 candidate principles" in result.explanations["random"]


# --- no tracebacks --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake run shared by the traceback tests (they only read it)."""
    from testdata import data_file

    out = tmp_path_factory.mktemp("everyday") / "run"
    assert main(["run", str(data_file("synthetic_data_aligned_vqvtb.csv")), "--out", str(out), *FAKE]) == 0
    return out


def test_export_to_a_directory_and_from_a_run_directory(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "exports"
    target.mkdir()
    # formerly IsADirectoryError twice: --out DIR, and a run directory as the constitution
    assert main(["export", str(run_dir), "--format", "prompt", "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {target / 'constitution.prompt.txt'}"
    assert "Select the response that" in (target / "constitution.prompt.txt").read_text(encoding="utf-8")
    assert main(["export", str(tmp_path), "--format", "prompt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"icai: error: {tmp_path} is a directory without a constitution.json; give a constitution file or a run directory"
    with pytest.raises(DataError, match="is a directory, not a constitution file"):
        Constitution.load(run_dir)
    # a new folder named with a trailing slash is a folder too, not a file called "new"
    assert main(["export", str(run_dir), "--format", "prompt", "--out", f"{tmp_path / 'new'}/"]) == 0
    assert (tmp_path / "new" / "constitution.prompt.txt").is_file()


def test_icai_test_by_a_column_splits_every_user_principle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the user's principles are split by the column whether or not selection keeps them
    rows = [
        {"prompt": f"q{i}", "chosen": f"a cat {i}", "rejected": f"a dog {i}", "team": "x" if i % 2 else "y"} for i in range(24)
    ]
    data = tmp_path / "dpo.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    mine = tmp_path / "mine.txt"
    cat, dog = "Select the response that mentions 'cat'.", "Select the response that mentions 'dog'."
    mine.write_text(f"{cat}\n{dog}\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["test", str(data), "--principles", str(mine), "--out", str(out), "--by", "team", *FAKE]) == 0
    groups = _json(out / "groups.json")
    assert {p["text"] for p in groups["principles"]} == {cat, dog}
    assert dog not in [p["text"] for p in _json(out / "constitution.json")["principles"]]


def test_a_copied_constitution_names_the_files_its_export_needs(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copied = tmp_path / "copy" / "constitution.json"
    copied.parent.mkdir()
    copied.write_bytes((run_dir / "constitution.json").read_bytes())
    for fmt in ("annotated-pairs", "reward-weights"):
        assert main(["export", str(copied), "--format", fmt]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "comparisons.csv or votes.csv" in err[0] and "export from the run directory" in err[0]
    assert main(["export", str(copied), "--format", "prompt"]) == 0  # formats that need only the constitution work


class _ClosedPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise ValueError("no file descriptor")


def test_a_closed_pipe_ends_quietly(run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["export", str(run_dir / "constitution.json"), "--format", "annotated-pairs"]) == EXIT_CLOSED_PIPE
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_in_a_real_process_prints_no_traceback(run_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "icai", "export", str(run_dir / "constitution.json"), "--format", "annotated-pairs"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait() in (0, EXIT_CLOSED_PIPE)
    assert "Traceback" not in err and err == ""


def test_writing_predictions_to_a_directory_is_one_sentence(run_dir: Path, aligned_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["annotate", str(aligned_csv), "--constitution", str(run_dir), "--model", "fake/keyword", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"icai: error: --out {tmp_path} is a folder; give a file name to write"


def test_an_unexpected_error_is_one_sentence_and_exit_1(run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import icai.cli

    def broken(args: object) -> int:
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setitem(icai.cli.COMMANDS, "report", broken)
    assert main(["report", str(run_dir)]) == EXIT_ERROR  # not bad input (2): the README's exit-code table
    err = capsys.readouterr().err.strip()
    assert err == "icai: internal error: RuntimeError: something unforeseen (rerun with -v for the traceback)"
    with pytest.raises(RuntimeError):
        main(["-v", "report", str(run_dir)])


def test_run_files_get_the_process_umask(aligned_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = (
        "import os, sys; os.umask(0o022); from icai.cli import main; "
        f"sys.exit(main({['run', str(aligned_csv), '--out', str(out), *FAKE]!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["constitution.json"] == 0o644 and modes["votes.csv"] == 0o644  # formerly 0600
    assert set(modes.values()) == {0o644}
