import json
import re
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
    # the run's constitution holds a style principle: its line follows the votes, the LLM judge's is beside it
    assert names[:3] == ["constitution", "constitution_llm", "default"] and printed["n_pairs"] == 30
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


# --- issue 28: icai evaluate scores the constitution with the judge that follows its voter -------------------

LIST_RULE = "Select the response that uses more list items."


def _bullets(text: str) -> int:
    """List items counted by hand: the lines these tests write with a leading "- "."""
    return sum(line.startswith("- ") for line in text.splitlines())


def _write_pairs(path, rows) -> None:
    import pandas as pd

    pd.DataFrame(
        [{"id": i, "prompt": p, "text_a": a, "text_b": b, "preferred": pref} for i, p, a, b, pref in rows]
    ).to_csv(path, index=False)


def _listy_training_rows(n: int = 24) -> list[tuple[str, str, str, str, str]]:
    """The response with a list always wins; topics vary and the list is on either side."""
    rows = []
    for i in range(n):
        t = ["tea", "bread", "rivers", "chess", "violins", "glaciers", "maps", "owls"][i % 8]
        listy = f"About {t}:\n- where {t} come from\n- how {t} work\n- why {t} matter ({i})"
        plain = f"About {t}: they come from somewhere, they work somehow, and they matter to people ({i})."
        rows.append((f"c{i}", f"Tell me about {t}.", *((listy, plain, "a") if i % 2 else (plain, listy, "b"))))
    return rows


def _evaluation_rows() -> list[tuple[str, str, str, str, str]]:
    """Other pairs: the list side wins 6 times and loses 4; 2 pairs hold two list items on both sides (a tie)."""
    rows = []
    topics = ["kites", "ferns", "clocks", "bees", "canals", "lamps", "shells", "trains", "wells", "forks", "moss", "tides"]
    for i, t in enumerate(topics):
        listy = f"On {t}:\n- what {t} are\n- where {t} are found\n- how {t} change ({i})"
        plain = f"On {t}: what they are, where they are found, and how they change ({i})."
        two = f"On {t}:\n- one side of {t}\n- another side of {t} ({i})"
        if i < 6:  # the list wins
            a, b, pref = (listy, plain, "a") if i % 2 else (plain, listy, "b")
        elif i < 10:  # the list loses
            a, b, pref = (listy, plain, "b") if i % 2 else (plain, listy, "a")
        else:  # as many list items on both sides
            a, b, pref = two, two.replace("one side", "a first side"), "a" if i % 2 else "b"
        rows.append((f"e{i}", f"Say something about {t}.", a, b, pref))
    return rows


def _style_run(tmp_path):
    """icai run (fake model, no LLM or embedding voter in play) on pairs a list always wins: the constitution is
    the style principle "uses more list items" (origin surface), voted by counting."""
    train = tmp_path / "listy.csv"
    _write_pairs(train, _listy_training_rows())
    run = tmp_path / "run"
    assert main(["run", str(train), "--out", str(run), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3"]) == 0
    data = json.loads((run / "constitution.json").read_text())
    assert [(p["text"], p["origin"]) for p in data["principles"]] == [(LIST_RULE, "surface")]
    assert data["config"]["vote_mode"] == "auto"  # the fake model's own votes: only the style principle is exact
    return run


def test_evaluate_scores_a_style_constitution_by_its_exact_votes_as_the_run_does(tmp_path, capsys):
    import pandas as pd

    run = _style_run(tmp_path)
    pairs = tmp_path / "other.csv"
    rows = _evaluation_rows()
    _write_pairs(pairs, rows)
    # the expectation, from the list items counted by hand: the side with more wins; equal counts score 0.5
    expected_picks = {
        i: "a" if _bullets(a) > _bullets(b) else "b" if _bullets(b) > _bullets(a) else "neither" for i, _, a, b, _ in rows
    }
    expected = sum(1.0 if expected_picks[i] == pref else 0.5 if expected_picks[i] == "neither" else 0.0
                   for i, *_, pref in rows) / len(rows)  # fmt: skip
    assert expected == pytest.approx(7 / 12)  # the pairs are built so the list neither always wins nor always loses
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = ["evaluate", str(pairs), "--constitution", str(run), "--model", "fake/keyword", "--embedder", "hash"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    scores = {s["name"]: s for s in printed["scores"]}
    assert list(scores)[:3] == ["constitution", "constitution_llm", "default"]  # the LLM judge's line kept beside it
    assert scores["constitution"]["agreement"] == pytest.approx(expected)
    judge = printed["explanations"]["constitution"]
    assert judge.startswith("the constitution's own votes on these pairs (exact feature counts for the style principles)")
    assert "LLM judge told to follow" in printed["explanations"]["constitution_llm"]
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["explanations"]["constitution"] == judge and saved["scores"] == printed["scores"]
    table = pd.read_csv(out / "pairs.csv", keep_default_na=False)
    assert dict(zip(table["id"], table["constitution"], strict=True)) == expected_picks
    assert "constitution_llm" in table.columns
    # on the terminal: the same line, and what it is
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert re.search(rf"^constitution +{expected:.3f} ", text, re.MULTILINE), text
    assert f"  constitution: {judge}" in text and "constitution_llm" in text

    # a constitution without its run's record (hand-written, or an older icai's): the voter is resolved from
    # --vote-mode and the model as a run resolves it; the principle's origin alone keeps it a style principle
    bare = tmp_path / "bare.json"
    data = json.loads((run / "constitution.json").read_text())
    bare.write_text(json.dumps({"schema": data["schema"], "principles": data["principles"]}))
    assert main(["evaluate", str(pairs), "--constitution", str(bare), "--model", "fake/keyword", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["scores"][0]["agreement"] == pytest.approx(expected)
    assert printed["explanations"]["constitution"] == judge


def test_evaluate_keeps_the_llm_judge_for_an_llm_voted_constitution_of_llm_principles(orthogonal_csv, tmp_path, capsys):
    import pandas as pd

    run = tmp_path / "run"
    argv = ["run", str(orthogonal_csv), "--out", str(run), "--model", "fake/keyword", "--embedder", "hash",
            "--no-style-principles"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((run / "constitution.json").read_text())
    assert data["principles"] and {p["origin"] for p in data["principles"]} == {"llm"}
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = ["evaluate", str(orthogonal_csv), "--constitution", str(run), "--model", "fake/keyword", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in printed["scores"]][:2] == ["constitution", "default"]
    assert "constitution_llm" not in printed["explanations"]
    assert printed["explanations"]["constitution"] == f"the judge told to follow the constitution's {len(data['principles'])} principles"
    assert "constitution_llm" not in pd.read_csv(out / "pairs.csv").columns


def test_evaluate_follows_a_recorded_embedding_voter(orthogonal_csv, tmp_path, capsys):
    """The run voted by embedding similarity: evaluate votes the constitution so too, though its model would not."""
    import pandas as pd

    from icai import load_comparisons
    from icai.embed import HashingEmbedder
    from icai.embed_vote import vote_by_embedding
    from icai.types import Constitution

    principles = tmp_path / "principles.txt"
    principles.write_text("".join(f"Select the response that mentions {w}.\n" for w in ("cat", "blue", "lemon")))
    run = tmp_path / "run"
    argv = ["test", str(orthogonal_csv), "--principles", str(principles), "--out", str(run), "--model", "fake/keyword",
            "--embedder", "hash", "--vote-mode", "embedding", "--test-size", "0.3"]  # fmt: skip
    assert main(argv) == 0
    constitution = Constitution.load(run / "constitution.json")
    assert constitution.principles and constitution.metadata["config"]["vote_mode"] == "embedding"
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = ["evaluate", str(orthogonal_csv), "--constitution", str(run), "--model", "fake/keyword", "--embedder", "hash",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in printed["scores"]][:2] == ["constitution", "constitution_llm"]
    assert "(embedding similarity for the proposed principles)" in printed["explanations"]["constitution"]
    # the picks: the sign of the summed embedding picks of the constitution's principles
    comparisons = load_comparisons(orthogonal_csv)
    votes = vote_by_embedding(comparisons, list(constitution.principles), HashingEmbedder())
    total = {c.id: 0 for c in comparisons}
    for v in votes:
        total[v.comparison_id] += sum({"a": 1, "b": -1}.get(p, 0) for p in v.picks)
    expected = {i: "a" if t > 0 else "b" if t < 0 else "neither" for i, t in total.items()}
    assert set(expected.values()) > {"neither"}  # the similarities take sides on some pairs
    table = pd.read_csv(out / "pairs.csv", dtype=str, keep_default_na=False)
    assert dict(zip(table["id"], table["constitution"], strict=True)) == expected
    assert not any("embedder" in w for w in printed["warnings"])
    # another embedder than the run's is said
    assert main([*argv[:-3], "--embedder", "hash/64", "--json"]) == 0
    captured = capsys.readouterr()
    assert "the run voted with the embedder hash/256" in captured.err
    assert any("hash/64" in w for w in json.loads(captured.out)["warnings"])


def test_the_recorded_voter_wins_and_without_one_the_voter_resolves_as_in_a_run():
    from icai.config import RunConfig
    from icai.llm.base import Capabilities
    from icai.voter import recorded_voter

    embeds, plain = Capabilities(embedding_votes=True), Capabilities()
    assert recorded_voter(RunConfig(vote_mode="auto"), plain, "embedding").vote_mode == "embedding"
    assert recorded_voter(RunConfig(vote_mode="logprob"), embeds, "generate").vote_mode == "logprob"
    assert recorded_voter(RunConfig(vote_mode="auto"), embeds, "auto").vote_mode == "auto"  # the run's LLM voted
    assert recorded_voter(RunConfig(vote_mode="auto"), embeds, None).vote_mode == "embedding"
    assert recorded_voter(RunConfig(vote_mode="auto"), plain, None).vote_mode == "auto"
    assert recorded_voter(RunConfig(vote_mode="generate"), embeds, None).vote_mode == "generate"
