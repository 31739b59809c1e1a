"""The real offline default (SmolLM2-135M GGUF + MiniLM) end to end on 4 pairs.

Asserts structure only: the 135M model's wording is never checked.
"""

import json

import pytest

from icai.cli import main

pytestmark = pytest.mark.slow


def test_offline_default_completes_on_four_pairs(orthogonal_csv, tmp_path, capsys):
    import pandas as pd

    small = tmp_path / "four.csv"
    frame = pd.read_csv(orthogonal_csv, index_col=0)
    frame.iloc[[0, 1, 10, 20]].to_csv(small)
    out = tmp_path / "run"
    code = main(["run", str(small), "--out", str(out), "--n-clusters", "4", "--proposals-per-pair", "2"])
    assert code == 0
    data = json.loads((out / "constitution.json").read_text())
    assert data["schema"] == "icai.constitution/1"
    assert data["model"] == "local/smollm2"
    assert data["embedder"].startswith("st/")
    assert data["n_train"] == 4
    assert data["usage"]["calls"] >= 4  # at least one proposal call per pair
    for row in data["principles"]:
        assert row["text"].startswith("Select the response that")
        assert row["stats"]["n_for"] > row["stats"]["n_against"]
    votes = pd.read_csv(out / "votes.csv")
    assert set(votes["value"]) <= {"for", "against", "abstain", "invalid"}
    assert (out / "report.html").exists()
