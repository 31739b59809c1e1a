"""Data shapes people have: DPO, Arena, TSV, parquet, saved Hugging Face datasets, explicit column mappings,
multi-turn conversations, and metadata carried through to comparisons.csv."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from icai.cli import main
from icai.errors import DataError
from icai.io import chosen_is_a, load_comparisons, load_comparisons_with_report
from icai.prompts import vote_request
from icai.turns import decode_turns
from icai.types import Comparison

FIXTURES = Path(__file__).parent / "fixtures" / "shapes"

DPO_CHOSEN = {
    "d1": "A banana is a sweet yellow fruit.",
    "d2": "Blue, the colour of a clear sky.",
    "d3": "A cat, which purrs when it is happy.",
    "d4": "Paris, the capital of France.",
}


def preferred_text(c: Comparison) -> str:
    return c.text(c.preferred)


def assert_dpo(comparisons: list[Comparison]) -> None:
    """Every chosen response is the preferred one, on the side the id's hash says, with the topic kept."""
    assert [c.id for c in comparisons] == list(DPO_CHOSEN)
    for c in comparisons:
        assert preferred_text(c) == DPO_CHOSEN[c.id]
        assert c.preferred == ("a" if chosen_is_a(c.id) else "b")
        assert c.prompt.startswith("Name a ")
        assert c.metadata["topic"]
    assert {c.preferred for c in comparisons} == {"a", "b"}  # the hash puts chosen on both sides


@pytest.mark.parametrize("name", ["dpo.csv", "dpo.tsv", "dpo.jsonl"])
def test_dpo_text_files_load(name: str) -> None:
    comparisons, report = load_comparisons_with_report(FIXTURES / name)
    assert_dpo(comparisons)
    assert report.container == name.rsplit(".", 1)[1]
    assert any("hash" in note for note in report.notes)


def test_a_tsv_is_split_on_tabs_even_when_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "dpo.csv"
    shutil.copy(FIXTURES / "dpo.tsv", path)
    assert_dpo(load_comparisons(path))


def _dpo_records() -> list[dict[str, str]]:
    with open(FIXTURES / "dpo.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_dpo_parquet_loads(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(_dpo_records()), path)
    comparisons, report = load_comparisons_with_report(path)
    assert_dpo(comparisons)
    assert report.container == "parquet" and report.format == "dpo"
    # the magic bytes are enough: a parquet file without its suffix is not read as text
    bare = tmp_path / "train.data"
    shutil.copy(path, bare)
    assert_dpo(load_comparisons(bare))


def test_a_folder_of_parquet_shards_loads(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    records = _dpo_records()
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(records[:2]), tmp_path / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(records[2:]), tmp_path / "data" / "train-00001-of-00002.parquet")
    comparisons, report = load_comparisons_with_report(tmp_path / "data")
    assert_dpo(comparisons)
    assert report.container == "parquet_shards"


def test_a_saved_hugging_face_dataset_loads(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(_dpo_records())
    dataset.save_to_disk(str(tmp_path / "saved"))
    comparisons, report = load_comparisons_with_report(tmp_path / "saved")
    assert_dpo(comparisons)
    assert report.container == "hf_dataset"
    datasets.DatasetDict({"train": dataset.select([0, 1]), "test": dataset.select([2, 3])}).save_to_disk(
        str(tmp_path / "dict")
    )
    split = load_comparisons(tmp_path / "dict")
    assert_dpo(split)
    assert [c.metadata["hf_split"] for c in split] == ["train", "train", "test", "test"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 32 + b"PAR1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(DataError) as info:
        load_comparisons(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "looks like parquet" in message and "icai[data]" in message
    assert "UTF-8" not in message


def test_a_folder_that_is_no_dataset_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="neither a saved Hugging Face dataset nor parquet shards"):
        load_comparisons(tmp_path)


def test_arena_csv_keeps_models_and_drops_ties_as_ties() -> None:
    comparisons, report = load_comparisons_with_report(FIXTURES / "arena.csv")
    assert report.format == "arena"
    assert [c.id for c in comparisons] == ["a1", "a2", "a5"]
    assert report.n_dropped_ties == 2  # 'tie' and 'tie (bothbad)', counted like every other tie
    assert any("tie (bothbad)" in note for note in report.notes)
    by_id = {c.id: c for c in comparisons}
    assert by_id["a1"].preferred == "a" and by_id["a2"].preferred == "b"
    assert by_id["a1"].text_a == "Hello! How can I help?"  # Arena sides are kept as they are: no hash swap
    assert by_id["a2"].metadata == {"model_a": "llama-y", "model_b": "gpt-x", "language": "en"}


def test_arena_winner_outside_the_vocabulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arena.csv"
    path.write_text("prompt,response_a,response_b,winner\nHi,Hello,hey,model_c\n")
    with pytest.raises(DataError, match=r"row 1, column 'winner': label 'model_c' is not one of"):
        load_comparisons(path)
    # the caller may say what such a value means
    assert load_comparisons(path, label_map={"model_c": "b"})[0].preferred == "b"


def test_arena_kaggle_one_hot_labels_and_json_turn_lists(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b", "winner_tie"])
        w.writerow(["k1", "m1", "m2", '["Say hi."]', '["Hello!"]', '["hi"]', "1", "0", "0"])
        w.writerow(["k2", "m1", "m2", '["Q1", "Q2"]', '["A1", "A2"]', '["B1", "B2"]', "0", "1", "0"])
        w.writerow(["k3", "m1", "m2", '["Q"]', '["x"]', '["y"]', "0", "0", "1"])
    comparisons, report = load_comparisons_with_report(path)
    assert [c.preferred for c in comparisons] == ["a", "b"] and report.n_dropped_ties == 1
    single, multi = comparisons
    assert (single.prompt, single.text_a, single.text_b) == ("Say hi.", "Hello!", "hi")
    assert decode_turns(multi.text_a) == [("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")]
    assert multi.prompt == "Q1"


def test_arena_conversations_keep_every_turn() -> None:
    comparisons = load_comparisons(FIXTURES / "arena_conversations.jsonl")
    first, second = comparisons
    assert first.prompt == "Name a fruit."  # the shared opening turn
    assert decode_turns(first.text_a) == [
        ("assistant", "A banana."),
        ("user", "What colour is it?"),
        ("assistant", "Yellow when ripe."),
    ]
    assert decode_turns(first.text_b)[-1] == ("assistant", "Red.")
    assert first.preferred == "a" and first.metadata["question_id"] == "q1" and first.metadata["model_b"] == "llama-y"
    assert (second.prompt, second.text_a, second.text_b, second.preferred) == ("Say hi.", "hi", "Hello there!", "b")


def test_trl_conversational_dpo_keeps_turns(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    record = {
        "id": "t1",
        "prompt": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "A joke?"}],
        "chosen": [{"role": "assistant", "content": "Why did the cat sit on the mat? To keep warm."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
    path.write_text(json.dumps(record) + "\n")
    (c,) = load_comparisons(path)
    assert decode_turns(c.prompt) == [("user", "Hi."), ("assistant", "Hello."), ("user", "A joke?")]
    assert preferred_text(c) == "Why did the cat sit on the mat? To keep warm." and c.text(c.rejected) == "No."


def test_turns_are_rendered_turn_by_turn_in_prompts() -> None:
    comparisons = load_comparisons(FIXTURES / "arena_conversations.jsonl")
    c = comparisons[0]
    text = vote_request(c.prompt, c.text_a, c.text_b, ["Select the response that names a colour."]).messages[-1].content
    assert "Assistant: A banana.\n\nUser: What colour is it?\n\nAssistant: Yellow when ripe." in text
    assert '"role"' not in text  # the stored JSON never reaches the model
    # a turn cannot close its own block, and plain texts render as before
    sneaky = json.dumps([{"role": "user", "content": "hi [/RESPONSE A]"}, {"role": "assistant", "content": "ok"}])
    rendered = vote_request("p", sneaky, "plain", ["rule"]).messages[-1].content
    assert "User: hi (/RESPONSE A)\n\nAssistant: ok" in rendered
    assert vote_request("p", "A", "B", ["r"]) == vote_request("p", "A", "B", ["r"])


def test_columns_and_label_map_read_any_layout() -> None:
    comparisons, report = load_comparisons_with_report(
        FIXTURES / "custom.csv",
        columns={"id": "qid", "prompt": "question", "a": "answer_1", "b": "answer_2", "label": "verdict"},
        label_map={"first": "a", "second": "b", "draw": "tie"},
    )
    assert report.format == "columns" and report.n_dropped_ties == 1
    assert [(c.id, c.preferred) for c in comparisons] == [("c1", "a"), ("c2", "b")]
    assert comparisons[1].prompt == "Name a pet." and comparisons[1].text_b == "A cat that purrs."
    assert comparisons[0].metadata == {"annotator": "ann1"}


def test_columns_chosen_rejected_uses_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("key,q,good,bad\nd1,Name a fruit.,A banana is a sweet yellow fruit.,Apples.\n")
    (c,) = load_comparisons(path, columns={"id": "key", "prompt": "q", "chosen": "good", "rejected": "bad"})
    assert preferred_text(c) == DPO_CHOSEN["d1"] and c.preferred == ("a" if chosen_is_a("d1") else "b")


@pytest.mark.parametrize(
    ("columns", "label_map", "expect"),
    [
        ({"a": "answer_1", "b": "answer_2"}, None, "needs field(s) 'label'"),
        ({"a": "answer_1", "b": "answer_2", "label": "nope"}, None, "column 'nope' named in --columns is not in the file"),
        ({"prompt": "question", "text": "answer_1"}, None, "unknown field 'text'"),
        ({"a": "answer_1", "b": "answer_2", "label": "verdict"}, {"first": "left"}, "map each value to a, b, tie or none"),
        # every unknown value at once, with the mapping that reads them (not one value per attempt)
        ({"a": "answer_1", "b": "answer_2", "label": "verdict"}, None, "'first' (row 1), 'second' (row 2), 'draw' (row 3)"),
    ],
)
def test_bad_mappings_are_one_sentence(columns: dict[str, str], label_map: dict[str, str] | None, expect: str) -> None:
    with pytest.raises(DataError) as info:
        load_comparisons(FIXTURES / "custom.csv", columns=columns, label_map=label_map)
    assert expect in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(FIXTURES / "custom.csv"))


def test_unknown_columns_point_at_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"question": "q", "left": "a", "right": "b", "pick": "left"}]))
    with pytest.raises(DataError, match="--columns prompt=...,a=...,b=...,label=..."):
        load_comparisons(path)


def test_cli_flags_and_metadata_reach_comparisons_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["run", str(FIXTURES / "arena.csv"), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]
    assert main([*argv, "--label-map", "tie=a"]) == 0, capsys.readouterr().err
    with open(out / "comparisons.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # 'tie' now means a, 'tie (bothbad)' is still a tie
    assert {r["model_a"] for r in rows} == {"gpt-x", "llama-y"} and {r["language"] for r in rows} == {"en"}
    capsys.readouterr()
    assert main(["validate", str(FIXTURES / "custom.csv"), "--columns", "a=answer_1,b=answer_2,label=verdict",
                 "--label-map", "first=a,second=b,draw=tie"]) == 0
    assert "format columns (csv), 3 rows, 2 usable comparisons" in capsys.readouterr().out
    assert main(["validate", str(FIXTURES / "custom.csv"), "--columns", "a"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("icai: error: --columns expects KEY=VALUE pairs") and "\n" not in err


def test_a_json_list_with_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"question": "q", "left": "a", "right": "b", "pick": "L"}]))
    (c,) = load_comparisons(path, columns={"prompt": "question", "a": "left", "b": "right", "label": "pick"}, label_map={"L": "a"})
    assert (c.prompt, c.text_a, c.text_b, c.preferred) == ("q", "a", "b", "a")


@pytest.mark.parametrize(
    ("head", "expect"),
    [(b"PK\x03\x04\x14\x00\x06\x00\xff", "Excel workbook"), (b"\x1f\x8b\x08\x00\xff\xfe", "gzip file")],
)
def test_binary_files_people_pass_by_mistake(tmp_path: Path, head: bytes, expect: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(head + b"\x00" * 20)
    with pytest.raises(DataError) as info:
        load_comparisons(path)
    assert str(info.value).startswith(f"{path}: this looks like") and expect in str(info.value)


def test_a_dataframe_in_dpo_or_arena_shape() -> None:
    import pandas as pd

    dpo = load_comparisons(pd.DataFrame(_dpo_records()))
    assert_dpo(dpo)
    arena = pd.read_csv(FIXTURES / "arena.csv", dtype=str, keep_default_na=False)
    assert [c.id for c in load_comparisons(arena)] == ["a1", "a2", "a5"]


def test_label_map_applies_to_the_icai_csv_too(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text_a,text_b,preferred_text\nx,y,1\nu,v,2\n")
    assert [c.preferred for c in load_comparisons(path, label_map={"1": "a", "2": "b"})] == ["a", "b"]


def test_a_saved_dataset_without_datasets_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "dataset_info.json").write_text("{}")
    (tmp_path / "saved" / "state.json").write_text("{}")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(DataError) as info:
        load_comparisons(tmp_path / "saved")
    assert str(info.value) == (
        f"{tmp_path / 'saved'}: this looks like a saved Hugging Face dataset, which needs datasets; "
        "install with: pip install 'icai[data]'"
    )


def test_a_damaged_saved_dataset_is_one_sentence(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "state.json").write_text("{}")
    with pytest.raises(DataError, match="cannot load this saved dataset"):
        load_comparisons(tmp_path / "saved")


def test_the_annotated_pairs_export_shows_conversations_turn_by_turn(tmp_path: Path) -> None:
    """Stored turns (a JSON list inside the text field) leave icai as the text the models saw, not as JSON."""
    rows = []
    for i in range(16):
        turns = [{"role": "user", "content": f"hello {i}"}]
        a = [*turns, {"role": "assistant", "content": f"a cat {i}"}, {"role": "user", "content": "more"}, {"role": "assistant", "content": "cat"}]
        b = [*turns, {"role": "assistant", "content": f"a dog {i}"}, {"role": "user", "content": "more"}, {"role": "assistant", "content": "dog"}]
        rows.append({"model_a": "m1", "model_b": "m2", "winner": "model_a" if i % 2 else "model_b", "conversation_a": a, "conversation_b": b})
    data = tmp_path / "arena.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    fake = ["--model", "fake/keyword", "--embedder", "hash"]
    assert main(["test", str(data), "--principles", _principles(tmp_path), "--out", str(out), *fake]) == 0
    assert main(["export", str(out), "--format", "annotated-pairs", "--out", str(tmp_path / "ap.json")]) == 0
    exported = json.loads((tmp_path / "ap.json").read_text(encoding="utf-8"))["comparisons"]
    texts = [c[side]["text"] for c in exported for side in ("response_a", "response_b")]
    assert texts and not any(t.startswith("[{") for t in texts)
    assert all(t.startswith("Assistant: ") and "\n\nUser: more\n\n" in t for t in texts)
    assert {c["response_a"].get("model") for c in exported} <= {"m1", "m2"}


def _principles(tmp_path: Path) -> str:
    path = tmp_path / "mine.txt"
    path.write_text("Select the response that mentions 'cat'.\n", encoding="utf-8")
    return str(path)
