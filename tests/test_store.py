"""icai.store: a run directory's tables read back as they were written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from icai.export import export
from icai.store import RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats


def test_a_table_reads_back_as_the_records_it_was_made_from(tmp_path: Path) -> None:
    from icai.types import Vote
    from icai.votes import VoteTable

    votes = [
        Vote("c1", "p1", "for", ("a", "a")),
        Vote("c1", "p2", "invalid", ("invalid", "invalid"), "no, \"never\"\nx"),
        Vote("c2", "p1", "abstain", ("a", "b")),
        Vote("c2", "p2", "against", ("neither", "b")),
    ]
    table = VoteTable.from_votes(votes)
    assert table is not None and list(table) == votes and table == votes and len(table) == 4
    store = RunStore(tmp_path / "run")
    store.save_votes(table)
    again = store.load_votes()
    assert isinstance(again, VoteTable) and list(again) == votes
    # the CSV export reads back as the same records
    (tmp_path / "run" / "votes.columns" / "meta.json").unlink()
    assert store.load_votes() == votes
    assert VoteTable.from_votes(votes[:3]) is None  # not a full grid: stays records


def test_run_store_keeps_input_metadata_for_the_export(tmp_path: Path) -> None:
    def comparison(cid: str, preferred: str, meta: dict) -> Comparison:
        return Comparison(cid, f"A {cid}", f"B {cid}", preferred, "", meta)  # type: ignore[arg-type]

    store = RunStore(tmp_path)
    train = [comparison("c1", "a", {"source": "web", "split": "dev", "tags": ["x", "y"]}), comparison("c2", "b", {})]
    store.save_comparisons(train, [comparison("c3", "a", {"source": "book", "model_a": "m1"})])
    rule = Principle("p1", "Select the response that is shorter.")
    store.save_constitution(Constitution((rule,), (PrincipleStats("p1", 3, 1, 1, 1, 0.75, 0.8),), {"dataset_hash": "abc123hash"}))
    pd.DataFrame(columns=["comparison_id", "principle_id", "value", "picks", "raw"]).to_csv(tmp_path / "votes.csv", index=False)
    data = json.loads(export(tmp_path / "constitution.json", "annotated-pairs"))
    assert data["metadata"]["available_metadata_keys_per_comparison"] == ["split", "source", "input_split", "tags"]
    first, second, third = data["comparisons"]
    assert first["metadata"] == {"split": "train", "source": "web", "input_split": "dev", "tags": '["x", "y"]'}
    assert second["metadata"] == {"split": "train"}
    assert third["metadata"] == {"split": "test", "source": "book"}
    assert third["response_a"] == {"text": "A c3", "model": "m1"}
