"""icai label: the labelling session (icai.labelling) and the terminal labeller in a pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from labelrun import prepared_label_run, unlabelled_csv

from icai.config import RunConfig
from icai.embed import get_embedder
from icai.io import load_comparisons
from icai.label_terminal import label_loop, side_by_side
from icai.labelling import LabelSession
from icai.llm.client import LLM
from icai.llm.fake import FakeProvider, keyword_responder
from icai.pipeline import run

ROOT = Path(__file__).resolve().parents[1]


def test_labels_make_no_model_calls_and_are_saved_at_once(tmp_path: Path) -> None:
    out, fake, truth, _ = prepared_label_run(tmp_path)
    calls = len(fake.requests)
    assert calls > 0  # proposals and votes, once, before the first label
    with LabelSession(out, who="tester") as session:
        for _ in range(12):
            nxt = session.next()
            assert nxt is not None
            pair, _choice = nxt
            summary = session.answer(pair.id, truth[pair.id])
            saved = json.loads((out / "labels.json").read_text())["labels"]
            assert saved[-1]["id"] == pair.id and saved[-1]["who"] == "tester" and saved[-1]["when"]
        assert summary.n_labelled == 12
        session.answer(session.next()[0].id, "tie")  # type: ignore[index]
        session.answer(session.next()[0].id, "skip")  # type: ignore[index]
        undone = session.undo()
        assert undone is not None and undone["label"] == "skip"
        summary = session.summary()
        assert (summary.n_labelled, summary.n_ties, summary.n_skipped) == (12, 1, 0)
    assert len(fake.requests) == calls  # labelling only counted votes

    # the constitution from only those labels, with intervals
    constitution = json.loads((out / "constitution.json").read_text())
    assert constitution["principles"] and constitution["labelling"]["n_labelled"] == 12
    assert all(p["stats"]["agreement_ci"] for p in constitution["principles"])
    # labelled.csv is an ordinary labelled file: the person's labels, readable by icai run
    labelled = load_comparisons(out / "labelled.csv")
    assert len(labelled) == 12 and all(c.preferred == truth[c.id] for c in labelled)
    result = run(labelled, llm=LLM(FakeProvider(keyword_responder, model="fake/keyword"), progress=False), embedder=get_embedder("hash"), config=RunConfig(n_clusters=10, bootstrap=0))
    assert result.constitution.principles


def test_a_resumed_session_keeps_its_answers_and_asks_the_same_pair(tmp_path: Path) -> None:
    out, fake, truth, _ = prepared_label_run(tmp_path)
    with LabelSession(out) as session:
        for _ in range(5):
            pair = session.next()[0]  # type: ignore[index]
            session.answer(pair.id, truth[pair.id])
        following = session.next()
        with pytest.raises(Exception, match="in use"):
            LabelSession(out)  # one labeller at a time
    with LabelSession(out) as again:
        assert len(again.records) == 5
        resumed = again.next()
        assert resumed is not None and following is not None and resumed[0].id == following[0].id
        with pytest.raises(Exception, match="unknown|one of"):
            again.answer(resumed[0].id, "maybe")


def test_active_choice_beats_the_input_order_on_its_first_labels(tmp_path: Path) -> None:
    # not a benchmark (bench/active_labelling.py is): the chosen pairs are ones principles decide on
    out, _, truth, pairs = prepared_label_run(tmp_path)
    with LabelSession(out, random_share=0.0) as session:
        first = session.next()
        assert first is not None and first[1].reason == "active" and first[1].gain > 0
        row = session.row[first[0].id]
        assert (session.sides[row] != 0).sum() >= (session.sides != 0).sum(axis=1).mean()


def test_terminal_loop_keys_with_undo_and_quit(tmp_path: Path) -> None:
    out, _, _, _ = prepared_label_run(tmp_path)
    keys = iter(["a", "x", "u", "b", "t", "q"])
    written = io.StringIO()
    with LabelSession(out, who="keys") as session:
        ended = label_loop(session, read_key=lambda: next(keys), write=written.write, width=90)
        assert ended == "quit"
        assert [r["label"] for r in session.records] == ["b", "tie"]
    text = written.getvalue()
    assert "Unknown key 'x'" in text and "Took back the answer 'a'" in text and "Constitution from your labels" in text


def test_side_by_side_columns_and_cuts() -> None:
    lines = side_by_side("short", "word " * 400, width=60, max_lines=5)
    assert len(lines) == 5 and all(" | " in line for line in lines)
    assert "more lines" in lines[-1]


def test_icai_label_in_a_pseudo_terminal(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    data, truth = unlabelled_csv(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "LINES": "40"}
    argv = ["-m", "icai", "label", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--who", "pty"]
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=120, dimensions=(40, 100))
    try:
        child.expect(r"Principles and votes ready: (\d+) model calls")
        assert int(child.match.group(1)) > 0
        child.expect(r"Pair 1 \(id (\S+),")
        first = child.match.group(1)
        child.expect_exact("[q] quit")
        child.send("a")  # one key, no Enter: the terminal is in cbreak mode
        child.expect(rf"Saved: pair {first} -> a\.")
        child.expect(r"Pair 2 \(id (\S+),")
        child.expect_exact("[q] quit")
        child.send("u")
        child.expect(rf"Took back the answer 'a' to pair {first}")
        child.expect(rf"Pair 1 \(id {first},")
        child.expect_exact("[q] quit")
        child.send("b" if truth[first] == "b" else "a")
        child.expect("Constitution from your labels")
        child.expect(r"Pair 2 \(id (\S+),")
        second = child.match.group(1)
        child.expect_exact("[q] quit")
        child.send("2")
        child.expect(rf"Saved: pair {second} -> b\.")
        child.expect_exact("[q] quit")
        child.send("q")
        child.expect(r"Model calls while labelling: (\d+)\.")
        assert child.match.group(1) == "0"
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert [(r["id"], r["who"]) for r in labels] == [(first, "pty"), (second, "pty")]

    # resume: nothing is proposed or voted again, and the numbering goes on
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=120, dimensions=(40, 100))
    try:
        child.expect(r"Principles and votes ready: 0 model calls")
        child.expect(r"Pair 3 \(id ")
        child.expect_exact("[q] quit")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert len(load_comparisons(out / "labelled.csv")) == 2
