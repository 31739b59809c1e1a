"""Tests for icai.io: every input format, drop counting, and one-line DataError messages."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest

from icai import datasets
from icai.errors import DataError
from icai.io import (
    FORMATS,
    LoadReport,
    load_comparisons,
    load_comparisons_with_report,
    save_comparisons_csv,
)
from icai.types import Comparison

FIXTURES = Path(__file__).parent / "fixtures" / "io"

HEADER = "text_a,text_b,preferred_text\n"


def data_error(call: Callable[[], Any], *fragments: str) -> str:
    """Assert `call` raises a one-line DataError containing every fragment; return the message."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- every format loads -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_rows"), [("llmbar-natural", 100), ("llmbar-adversarial", 319), ("evalbiasbench", 80)]
)
def test_shipped_real_csv_files_load(name: str, n_rows: int) -> None:
    path = datasets.path(name)
    comparisons, report = load_comparisons_with_report(path)
    assert report == LoadReport(str(path), "icai_csv", n_rows, n_rows, 0, 0, container="csv")
    first = comparisons[0]
    assert first.prompt and first.text_a and first.text_b
    assert set(first.metadata) == {"source", "subset"}
    assert len({c.id for c in comparisons}) == n_rows
    assert {c.preferred for c in comparisons} == {"a", "b"}


@pytest.mark.parametrize("name", ["synthetic-aligned", "synthetic-orthogonal"])
def test_synthetic_csv_splits_shared_instruction_into_prompt(name: str) -> None:
    comparisons = load_comparisons(datasets.path(name))
    assert len(comparisons) == 30
    assert [c.id for c in comparisons] == [str(i) for i in range(30)]
    for c in comparisons:
        assert c.prompt and not c.prompt.startswith("Instruction:")
        assert "Output:" not in c.text_a[:10] and "Instruction:" not in c.text_a
        assert not c.text_a.startswith((" ", "\n")) and not c.text_b.startswith((" ", "\n"))
        assert c.metadata == {}  # the unnamed index column is ignored


def test_instruction_split_needs_identical_instruction(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.csv",
        HEADER + '"Instruction: X\n\nOutput: one","Instruction: Y\n\nOutput: two",text_a\n'
        '"Instruction: X\n\nOutput: one","Instruction: X\n\nOutput: two",text_b\n',
    )
    first, second = load_comparisons(path)
    assert (first.prompt, first.text_a) == ("", "Instruction: X\n\nOutput: one")
    assert (second.prompt, second.text_a, second.text_b) == ("X", "one", "two")


def test_annotated_pairs_example_loads() -> None:
    path = datasets.path("synthetic-annotated-pairs")
    (c,), report = load_comparisons_with_report(path)
    assert report.format == "annotated_pairs"
    assert c.id == "4b49a6e7" and c.prompt == "Write a short story about a pet." and c.preferred == "a"
    assert c.text_a.startswith("In the heart of a bustling city") and c.text_b.startswith("Across the town")
    assert c.metadata == {"index": "0", "model_a": "Model X", "model_b": "Model Y"}


def annotated_pairs(comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"version": "2.0", "default_annotator": "h"}, "annotators": {}, "comparisons": comparisons}


def pair(cid: str, pref: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "prompt": "p",
        "response_a": {"text": "A"},
        "response_b": {"text": "B"},
        "annotations": {"h": {"pref": pref}, "other": {"pref": "b"}},
        "metadata": {"k": cid},
    }


def test_annotated_pairs_drops_missing_preferences(tmp_path: Path) -> None:
    path = write(tmp_path, "ap.json", json.dumps(annotated_pairs([pair("1", "b"), pair("2", None), pair("3", "a")])))
    comparisons, report = load_comparisons_with_report(path)
    assert [(c.id, c.preferred) for c in comparisons] == [("1", "b"), ("3", "a")]
    assert (report.n_rows, report.n_dropped_missing, report.n_dropped_ties) == (3, 1, 0)


def test_annotated_pairs_accept_reference_aliases_and_version_1(tmp_path: Path) -> None:
    # the reference maps text_a/text_b to a/b; version 1.0 records hold text_a/text_b strings
    records = [pair("1", "text_b"), {"id": "2", "text_a": "A", "text_b": "B", "annotations": {"h": {"pref": "a"}}}]
    path = write(tmp_path, "ap.json", json.dumps(annotated_pairs(records)))
    comparisons = load_comparisons(path)
    assert [(c.id, c.preferred, c.text_a) for c in comparisons] == [("1", "b", "A"), ("2", "a", "A")]
    path = write(tmp_path, "bad.json", json.dumps(annotated_pairs([pair("1", ["a"])])))
    data_error(lambda: load_comparisons(path), str(path), "row 1", "['a']")


def test_hh_jsonl_splits_prompt_and_balances_sides() -> None:
    comparisons, report = load_comparisons_with_report(FIXTURES / "hh.jsonl")
    assert (report.format, report.n_rows, report.n_loaded, report.n_dropped_ties) == ("hh_jsonl", 4, 3, 1)
    by_id = {c.id: c for c in comparisons}
    first = by_id["0"]
    assert first.prompt == "Human: What is the capital of France?\n\nAssistant:"
    assert first.text(first.preferred) == "Paris." and first.text(first.rejected) == "I don't know."
    joke = by_id["1"]
    assert joke.prompt.endswith("Human: Tell me a joke.\n\nAssistant:") and "Hello! How can I help?" in joke.prompt
    assert joke.text(joke.preferred).startswith("Why did the chicken")
    explicit = by_id["2"]
    assert explicit.prompt == "Name a primary colour." and explicit.text(explicit.preferred) == "Red."
    assert explicit.metadata == {"split": "test"}
    for c in comparisons:
        chosen_on_a = int(hashlib.sha256(c.id.encode()).hexdigest(), 16) % 2 == 0
        assert c.preferred == ("a" if chosen_on_a else "b")


def test_hh_sides_are_deterministic_and_mixed(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) for i in range(20)]
    path = write(tmp_path, "many.jsonl", "\n".join(lines) + "\n")
    first, second = load_comparisons(path), load_comparisons(path)
    assert first == second
    assert {c.preferred for c in first} == {"a", "b"}
    assert all(c.text(c.preferred).startswith("good") for c in first)


def test_alpaca_eval_counts_ties_and_missing() -> None:
    comparisons, report = load_comparisons_with_report(FIXTURES / "alpaca_eval.json")
    assert report.format == "alpaca_eval"
    assert (report.n_rows, report.n_loaded, report.n_dropped_ties, report.n_dropped_missing) == (5, 3, 1, 1)
    assert [(c.id, c.preferred) for c in comparisons] == [("0", "a"), ("1", "b"), ("4", "b")]
    assert comparisons[1].prompt == "Spell cat." and comparisons[1].text_b == "c-a-t"
    assert comparisons[0].metadata == {"generator_1": "gpt4", "generator_2": "llama"}


def test_dataframe_with_preferred_text_and_index_column() -> None:
    frame = pd.DataFrame(
        {"Unnamed: 0": [0, 1], "text_a": ["x", "y"], "text_b": ["u", "v"], "preferred_text": ["text_a", "B"]},
        index=[10, 11],
    )
    comparisons, report = load_comparisons_with_report(frame)
    assert report.format == "dataframe" and report.source == "<DataFrame>"
    assert [(c.id, c.preferred, c.metadata) for c in comparisons] == [("10", "a", {}), ("11", "b", {})]


def test_dataframe_with_preferred_column_and_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "id": ["p", "q", "r"],
            "prompt": ["hi", None, "yo"],
            "text_a": ["x", "y", "z"],
            "text_b": ["u", "v", "w"],
            "preferred": ["a", "b", None],
            "judge": ["j1", "j2", "j3"],
        }
    )
    comparisons, report = load_comparisons_with_report(frame, format="dataframe")
    assert [(c.id, c.prompt, c.preferred) for c in comparisons] == [("p", "hi", "a"), ("q", "", "b")]
    assert comparisons[0].metadata == {"judge": "j1"}
    assert report.n_dropped_missing == 1


def test_csv_ties_and_missing_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "d.csv", HEADER + "x,y,text_a\nx2,y2,tie\nx3,y3,\nx4,y4,A\nx5,y5,b\n")
    comparisons, report = load_comparisons_with_report(path)
    assert [c.preferred for c in comparisons] == ["a", "a", "b"]
    assert [c.id for c in comparisons] == ["0", "3", "4"]
    assert (report.n_rows, report.n_loaded, report.n_dropped_ties, report.n_dropped_missing) == (5, 3, 1, 1)
    with caplog.at_level(logging.WARNING, logger="icai.io"):
        assert load_comparisons(path) == comparisons
    assert "1 ties" in caplog.text and "1 with a missing preference" in caplog.text


def test_nothing_usable_raises_with_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", HEADER + "x,y,tie\nx2,y2,\nx3,y3,TIE\n")
    data_error(lambda: load_comparisons(path), str(path), "no usable comparisons", "2 ties", "1 missing")


def test_save_round_trip(tmp_path: Path) -> None:
    original = [
        Comparison("c1", 'say "hi",\nplease', "b, text", "a", "prompt\n1", {"source": "s1"}),
        Comparison("c2", "a2", "b2", "b", "", {"source": "s2", "score": 3}),
    ]
    path = save_comparisons_csv(original, tmp_path / "out" / "pairs.csv")
    loaded = load_comparisons(path)
    assert [(c.id, c.text_a, c.text_b, c.preferred, c.prompt) for c in loaded] == [
        (c.id, c.text_a, c.text_b, c.preferred, c.prompt) for c in original
    ]
    assert loaded[0].metadata == {"source": "s1", "score": ""}
    assert loaded[1].metadata == {"source": "s2", "score": "3"}
    assert not list(path.parent.glob("*.tmp"))


def test_auto_detects_by_content(tmp_path: Path) -> None:
    alpaca = (FIXTURES / "alpaca_eval.json").read_text(encoding="utf-8")
    assert load_comparisons_with_report(write(tmp_path, "ann.txt", alpaca))[1].format == "alpaca_eval"
    hh_list = json.dumps([{"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert load_comparisons_with_report(write(tmp_path, "hh.json", hh_list))[1].format == "dpo"  # DPO records (a prompt field) are named as such, in JSON as in CSV
    hh_lines = (FIXTURES / "hh.jsonl").read_text(encoding="utf-8")
    assert load_comparisons_with_report(write(tmp_path, "hh.data", hh_lines))[1].format == "hh_jsonl"
    assert load_comparisons_with_report(write(tmp_path, "pairs.txt", HEADER + "x,y,a\n"))[1].format == "icai_csv"


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "pairs.txt", HEADER + "x,y,a\n")
    assert load_comparisons(path, format="icai_csv")[0].preferred == "a"


# --- bad input: one-line DataError naming file, row and column ------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    data_error(lambda: load_comparisons(path), str(path), "not found")


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "empty.csv", content)
    data_error(lambda: load_comparisons(path), str(path), "empty")


def test_header_only_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", HEADER)
    data_error(lambda: load_comparisons(path), str(path), "no data rows")


def test_missing_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text_a,answer\nx,y\n")
    data_error(lambda: load_comparisons(path), str(path), "'text_b'", "'preferred_text'")


def test_missing_required_columns_in_dataframe() -> None:
    frame = pd.DataFrame({"text_a": ["x"], "text_b": ["y"]})
    data_error(lambda: load_comparisons(frame), "<DataFrame>", "'preferred_text'")


def test_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", HEADER + "x,y,a\n")
    message = data_error(lambda: load_comparisons(path, format="parquet"), str(path), "'parquet'")  # type: ignore[arg-type]
    assert all(repr(name) in message for name in FORMATS)


def test_undetectable_format(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "just some prose\n")
    data_error(lambda: load_comparisons(path), str(path), "cannot detect", "'icai_csv'")


@pytest.mark.parametrize(("cell", "problem"), [("", "text is empty"), ("   ", "text is empty")])
def test_empty_text_names_row_and_column(tmp_path: Path, cell: str, problem: str) -> None:
    path = write(tmp_path, "d.csv", HEADER + f"x,y,a\nx2,y2,b\nx3,{cell},a\n")
    data_error(lambda: load_comparisons(path), str(path), "row 3", "column 'text_b'", problem)


def test_nan_text_in_dataframe() -> None:
    frame = pd.DataFrame({"text_a": ["x", float("nan")], "text_b": ["y", "z"], "preferred": ["a", "b"]})
    data_error(lambda: load_comparisons(frame), "<DataFrame>", "row 2", "column 'text_a'", "missing")


def test_bad_preferred_value(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", HEADER + "x,y,a\nx2,y2,text_c\n")
    data_error(lambda: load_comparisons(path), str(path), "row 2", "column 'preferred_text'", "'text_c'")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "id,text_a,text_b,preferred_text\nk1,x,y,a\nk2,x,y,a\nk1,x,y,b\n")
    data_error(lambda: load_comparisons(path), str(path), "duplicate id 'k1'", "row 1", "row 3")


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + "caf\xe9,y,a\n".encode("latin-1"))
    data_error(lambda: load_comparisons(path), str(path), "UTF-8", f"offset {len(HEADER) + 3}")


def test_malformed_jsonl_names_line(tmp_path: Path) -> None:
    good = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    path = write(tmp_path, "d.jsonl", f'{good}\n\n{{"chosen": \n')
    data_error(lambda: load_comparisons(path), str(path), "line 3", "malformed JSON")


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", '[\n  {"instruction": "x",\n  oops}\n]\n')
    data_error(lambda: load_comparisons(path, format="alpaca_eval"), str(path), "malformed JSON", "line 3")


def test_hh_missing_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", json.dumps({"chosen": "a"}) + "\n")
    data_error(lambda: load_comparisons(path), str(path), "line 1", "'rejected'")


def test_alpaca_eval_missing_keys_and_bad_preference(tmp_path: Path) -> None:
    row = {"instruction": "i", "output_1": "o1", "output_2": "o2", "preference": 1}
    path = write(tmp_path, "a.json", json.dumps([row, {k: v for k, v in row.items() if k != "output_2"}]))
    data_error(lambda: load_comparisons(path), str(path), "row 2", "'output_2'")
    path = write(tmp_path, "b.json", json.dumps([row, {**row, "preference": 3}]))
    data_error(lambda: load_comparisons(path), str(path), "row 2", "column 'preference'", "3")


def test_annotated_pairs_missing_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "a.json", json.dumps({"comparisons": [], "metadata": {}}))
    data_error(lambda: load_comparisons(path, format="annotated_pairs"), str(path), "'metadata.default_annotator'")
    path = write(tmp_path, "b.json", json.dumps({"metadata": {"default_annotator": "h"}}))
    data_error(lambda: load_comparisons(path, format="annotated_pairs"), str(path), "'comparisons'")
    broken = pair("2", "a")
    del broken["response_b"]["text"]
    path = write(tmp_path, "c.json", json.dumps(annotated_pairs([pair("1", "a"), broken])))
    data_error(lambda: load_comparisons(path), str(path), "row 2", "column 'response_b'", "'text'")
    path = write(tmp_path, "d.json", json.dumps(annotated_pairs([pair("1", "maybe")])))
    data_error(lambda: load_comparisons(path), str(path), "row 1", "'maybe'")


def test_wrong_source_type() -> None:
    data_error(lambda: load_comparisons(cast(Any, 42)), "int")


def test_large_csv_rows_are_read_in_chunks_with_their_own_row_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is turned into records a few rows at a time (memory); rows, labels, metadata and the row named in an
    error are the same as read in one piece."""
    import icai.io as io_module

    rows = [f"p{i},answer {i} a,answer {i} b,{'text_a' if i % 3 else 'text_b'},m{i}" for i in range(7)]
    path = tmp_path / "pairs.csv"
    path.write_bytes(("\ufeffprompt,text_a,text_b,preferred_text,model\n" + "\n".join(rows) + "\n").encode())
    whole = load_comparisons(path)
    monkeypatch.setattr(io_module, "FRAME_CHUNK_ROWS", 3)
    chunked = load_comparisons(path)
    assert chunked == whole
    assert [c.id for c in chunked] == [str(i) for i in range(7)]
    assert [c.preferred for c in chunked] == ["b", "a", "a", "b", "a", "a", "b"]
    assert chunked[5].metadata == {"model": "m5"} and chunked[5].prompt == "p5"
    bad = rows[:5] + ["p5,answer 5 a,,text_a,m5"] + rows[6:]
    path.write_text("prompt,text_a,text_b,preferred_text,model\n" + "\n".join(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 6"):
        load_comparisons(path)
